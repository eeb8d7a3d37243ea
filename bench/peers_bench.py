"""hetuflow against the tools users would pick instead, on the same machine, in one run.

The same command (``bash -c true``; for hetuflow a bash job whose script is ``true``), the same count of
tasks (``--tasks``, 2,000) and the same concurrency (``--concurrency``, 8; for hetuflow one agent of that
capacity), for:

- the machine's floors (``_floors``): 8 processes spawning back to back, and one asyncio process;
- Celery + Redis, prefork (``_peers/celery_runner.py``): drained and end to end;
- Procrastinate on the same PostgreSQL (``_peers/procrastinate_runner.py``): drained and end to end;
- hetuflow (``_hetuflow``): a real ``hetuflow-server serve`` and a real ``hetuflow-agent run``: drained,
  end to end through the REST API (single triggers, and the bulk form 100 per request), submit rate,
  trigger latency, trigger → process start, fire delay, and the dispatch capacity with simulated agents;
- scale (``_scale``): many idle simulated agents on one server, ``GET /api/v1/tasks`` over a million rows,
  an idle agent's memory.

Every run checks that each task ran exactly once and the benchmark exits 1 otherwise. Rates are medians of
``--repeats`` runs (3; 1 with ``--quick``), the tools interleaved within each repetition so that a busy
moment of the machine hits all of them. The last line is ``SUMMARY key=value …`` (ratios are hetuflow's end
to end rate over the other's). ``--profile DIR`` adds one more end-to-end run under py-spy (not counted in
the medians): flame graphs of the server and the agent, and their hottest frames.

Run: ``python bench/peers_bench.py [--quick] [--profile DIR]`` (about 4 minutes with ``--quick``, 15 without).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _floors
import _profile
import _scale
from _hetuflow import Hetuflow, p50_p99
from _peers._process import PeerUnavailable
from _peers._record import ExactlyOnceError
from _peers.celery_runner import Celery, redis_server
from _peers.procrastinate_runner import Procrastinate, create_database
from api_bench import embedded_postgres, open_bench_server

PROFILE_TOP = 25
MB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller side runs (under 4 min)")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per run and tool (default 2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="workers / agent capacity (default 8)")
    parser.add_argument("--repeats", type=int, help="repetitions, medians reported (default 3, quick 1)")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="py-spy the server and agent into DIR")
    parser.add_argument("--skip-peers", action="store_true", help="hetuflow and the floors only")
    parser.add_argument("--sim-agents", type=int, default=4, help="simulated agents (default 4)")
    parser.add_argument("--sim-capacity", type=int, default=64, help="their capacity (default 64)")
    parser.add_argument("--sim-tasks", type=int, help="dispatch capacity tasks (default 20000, quick 5000)")
    parser.add_argument("--fire-tasks", type=int, help="fire delay tasks (default 50, quick 20)")
    parser.add_argument(
        "--agents-scale", type=int, help="idle simulated agents (default 1000, quick 100; 0 skips)"
    )
    parser.add_argument("--scale-seconds", type=float, help="CPU sampling time (default 30, quick 10)")
    parser.add_argument("--list-rows", type=int, help="task rows for the list (default 1000000, quick 0)")
    parser.add_argument("--list-requests", type=int, default=200, help="requests per list query")
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database to use instead of an embedded one"
    )
    # `nox -s bench -- ARGS` hands the same arguments to every benchmark: ignore the ones meant for others.
    args, _ = parser.parse_known_args()
    quick = args.quick
    defaults = {
        "repeats": 1 if quick else 3,
        "sim_tasks": 5000 if quick else 20_000,
        "fire_tasks": 20 if quick else 50,
        "agents_scale": 100 if quick else 1000,
        "scale_seconds": 10.0 if quick else 30.0,
        "list_rows": 0 if quick else 1_000_000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.tasks < 10 or args.concurrency < 1 or args.repeats < 1 or args.fire_tasks < 1:
        parser.error("--tasks must be at least 10; --concurrency, --repeats and --fire-tasks at least 1")
    return args


class Results:
    """Every figure of the run by name: rates per repetition, latency samples, single values."""

    def __init__(self) -> None:
        self.rates: dict[str, list[float]] = defaultdict(list)
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.values: dict[str, float] = {}
        self.skipped: dict[str, str] = {}

    def rate(self, name: str) -> float:
        runs = self.rates.get(name)
        return statistics.median(runs) if runs else math.nan

    def add(self, name: str, value: float) -> None:
        self.rates[name].append(value)
        print(f"  {name}: {value:.1f} tasks/s", flush=True)


def run_peers(args: argparse.Namespace, root: Path, url: str, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Start Redis and prepare Procrastinate's database once; the peers that cannot run are skipped."""
    peers: dict[str, Any] = {}
    if args.skip_peers:
        return peers
    try:
        redis_url = stack.enter_context(redis_server(root))
        peers["celery"] = Celery(redis_url, root, args.concurrency)
    except PeerUnavailable as exc:
        print(f"SKIPPED Celery: {exc}", flush=True)
    peers["procrastinate"] = Procrastinate(create_database(url), root, args.concurrency)
    return peers


def repetition(args: argparse.Namespace, results: Results, peers: dict[str, Any], h: Hetuflow) -> None:
    n, c = args.tasks, args.concurrency
    results.add("floor_multi", _floors.multi_process(n, c))
    results.add("floor_asyncio", _floors.one_asyncio_process(n, c))
    for name, peer in peers.items():
        results.add(f"{name}_drained", peer.drained(n))
        results.add(f"{name}_e2e", peer.end_to_end(n))
    drained = h.drained(n)
    results.add("hetuflow_drained", drained.rate)
    if h.bulk_field is None:
        results.samples["trigger_ms"] += drained.submission.latencies_ms
        results.add("trigger_single", drained.submission.rate)
    else:
        results.add("submit_bulk", drained.submission.rate)
    e2e = h.end_to_end(n)
    results.add("hetuflow_e2e", e2e.rate)
    results.samples["start_ms"] += e2e.start_ms
    if h.bulk_field is not None:
        results.add("trigger_single", e2e.submission.rate)
        results.add("hetuflow_e2e_bulk", h.end_to_end_bulk(n))
    results.add("dispatch", h.dispatch_capacity(args.sim_agents, args.sim_capacity, args.sim_tasks))


def hetuflow_once(args: argparse.Namespace, results: Results, h: Hetuflow) -> None:
    """The measurements made once: trigger latency (with a bulk form), fire delay, profile, scale."""
    if h.bulk_field is not None:
        results.samples["trigger_ms"] += h.trigger_latency(min(args.tasks, 1000)).latencies_ms
    fire = h.fire_delay(args.fire_tasks)
    results.samples["fire_ms"] = fire.delays_ms
    results.values["idle_agent_rss"] = fire.idle_agent_rss
    print("  fire delay p50 / p99: {:.1f} / {:.1f} ms".format(*p50_p99(fire.delays_ms)), flush=True)
    if args.profile:
        profile(args, results, h)
    if args.agents_scale > 0:
        scale = _scale.idle_agents(h, args.agents_scale, args.scale_seconds)
        results.values.update(
            scale_agents=scale.agents,
            scale_cpu=scale.cpu_percent,
            scale_rss=scale.rss,
            scale_dispatch_ms=scale.dispatch_ms,
            scale_done_ms=scale.done_ms,
            scale_disconnects=scale.disconnects,
            scale_heartbeat_p50_ms=scale.heartbeat_p50_ms,
            scale_heartbeat_p99_ms=scale.heartbeat_p99_ms,
            scale_gc_pauses=scale.gc_pauses,
            scale_gc_over_20ms=scale.gc_over_20ms,
        )
        print(f"  {scale.agents} idle agents: server CPU {scale.cpu_percent:.1f} %", flush=True)
        if scale.disconnects:
            raise RuntimeError(f"{scale.disconnects} idle simulated agents were disconnected")
    if args.list_rows > 0:
        _scale.load_history(h, args.list_rows)
        for name, samples in _scale.list_latency(h, args.list_requests).items():
            results.samples[f"list {name}"] = samples
        results.values["list_rows"] = args.list_rows


def profile(args: argparse.Namespace, results: Results, h: Hetuflow) -> None:
    directory: Path = args.profile.resolve()

    def during(agent_pid: int) -> contextlib.AbstractContextManager[None]:
        return _profile.recording(directory, {"server": h.server.pid, "agent": agent_pid})

    e2e = h.end_to_end(args.tasks, during)
    results.values["profiled_e2e"] = e2e.rate
    print(f"\nprofiled end-to-end run (not in the medians): {e2e.rate:.1f} tasks/s; files in {directory}")
    for name in ("server", "agent"):
        _profile.print_top(name, directory / f"{name}.txt", PROFILE_TOP)


def main() -> int:
    args = parse_args()
    results = Results()
    results.values["load_before"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hetuflow-peers-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        url = args.database_url or stack.enter_context(embedded_postgres(root / "pg"))
        peers = run_peers(args, root, url, stack)
        h = Hetuflow(open_bench_server(stack, root, url), root, args.concurrency)
        stack.callback(h.close)
        print(f"bulk trigger form: {h.bulk_field or 'none (single triggers give submit_per_s)'}", flush=True)
        try:
            for index in range(args.repeats):
                print(f"repetition {index + 1} of {args.repeats}", flush=True)
                repetition(args, results, peers, h)
            hetuflow_once(args, results, h)
        except ExactlyOnceError as exc:
            print(f"FAILED: not every task ran exactly once: {exc}", file=sys.stderr, flush=True)
            return 1
    results.values["load_after"] = os.getloadavg()[0]
    print_report(args, results)
    return 0


# ---------------------------------------------------------------- the report


def _fmt(value: float, digits: int = 1) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def summary(results: Results) -> dict[str, float]:
    e2e = results.rate("hetuflow_e2e")
    trigger = results.samples.get("trigger_ms") or [math.nan]
    fire = results.samples.get("fire_ms") or [math.nan]
    submit = (
        results.rate("submit_bulk") if results.rates.get("submit_bulk") else results.rate("trigger_single")
    )
    return {
        "e2e_per_s": e2e,
        "drain_per_s": results.rate("hetuflow_drained"),
        "floor_per_s": results.rate("floor_multi"),
        "celery_e2e_per_s": results.rate("celery_e2e"),
        "procrastinate_e2e_per_s": results.rate("procrastinate_e2e"),
        "ratio_celery": e2e / results.rate("celery_e2e"),
        "ratio_procrastinate": e2e / results.rate("procrastinate_e2e"),
        "ratio_floor": e2e / results.rate("floor_multi"),
        "submit_per_s": submit,
        "trigger_p50_ms": p50_p99(trigger)[0],
        "trigger_p99_ms": p50_p99(trigger)[1],
        "fire_p50_ms": p50_p99(fire)[0],
        "fire_p99_ms": p50_p99(fire)[1],
        "dispatch_per_s": results.rate("dispatch"),
    }


def print_report(args: argparse.Namespace, results: Results) -> None:
    n, c = args.tasks, args.concurrency
    e2e = results.rate("hetuflow_e2e")
    runs = "1 run" if args.repeats == 1 else f"median of {args.repeats} runs"
    cpus = os.cpu_count() or 1
    where = f"all on this machine ({cpus} CPUs)"
    print(f"\n{n} tasks of `bash -c true` at concurrency {c}, {runs}, {where}")
    before, after = results.values.get("load_before", math.nan), results.values.get("load_after", math.nan)
    print(
        f"load average (1 min) before / after the run (which loads the machine): {before:.1f} / {after:.1f}"
    )
    if before > cpus:
        print(f"  the {cpus} CPUs were busy before the run: other work shared them, read the ratios only")
    rows = [
        ("floor_multi", f"floor: {c} processes, subprocess.run back to back"),
        ("floor_asyncio", f"floor: one asyncio process, {c} at a time"),
        ("celery_drained", f"Celery + Redis, prefork -c {c}: drained"),
        ("celery_e2e", "Celery: end to end (delay)"),
        ("procrastinate_drained", f"Procrastinate, worker -c {c}: drained"),
        ("procrastinate_e2e", "Procrastinate: end to end (batch_defer 1,000)"),
        ("hetuflow_drained", f"hetuflow, 1 agent x {c}: drained (API first)"),
        ("hetuflow_e2e", "hetuflow: end to end (API, 16 clients)"),
        ("hetuflow_e2e_bulk", "hetuflow: end to end (bulk trigger, 100 per request)"),
        ("trigger_single", "hetuflow: POST /trigger, 16 clients"),
        ("submit_bulk", "hetuflow: bulk trigger"),
        ("dispatch", f"hetuflow: dispatch, {args.sim_agents} sim agents x {args.sim_capacity}"),
    ]
    header = f"{'run':<50}{'tasks/s':>10}{'e2e ratio':>11}"
    print(header)
    print("-" * len(header))
    for key, label in rows:
        if key in results.rates:
            rate = results.rate(key)
            print(f"{label:<50}{rate:>10.1f}{e2e / rate:>11.2f}")
    print("(e2e ratio = hetuflow end to end / the row)")

    print(f"\n{'latency (ms)':<50}{'p50':>10}{'p99':>10}")
    print("-" * 70)
    latencies = [
        ("trigger_ms", "POST /trigger, 16 clients, no agent"),
        ("start_ms", "trigger -> process start, under the e2e load"),
        ("fire_ms", f"fire delay: due -> process start, idle agent ({args.fire_tasks})"),
        ("list first page", "GET /api/v1/tasks, first page"),
        ("list status=failed", "GET /api/v1/tasks?status=failed"),
    ]
    for key, label in latencies:
        if results.samples.get(key):
            p50, p99 = p50_p99(results.samples[key])
            print(f"{label:<50}{p50:>10.1f}{p99:>10.1f}")
    if "list_rows" in results.values:
        print(f"(task list over {results.values['list_rows']:,.0f} rows, {args.list_requests} requests each)")

    values = results.values
    print()
    if "idle_agent_rss" in values:
        print(f"idle agent (hetuflow-agent run) RSS: {values['idle_agent_rss'] / MB:.1f} MB")
    if "scale_agents" in values:
        agents, cpu, rss = values["scale_agents"], values["scale_cpu"], values["scale_rss"] / MB
        print(
            f"{agents:.0f} idle simulated agents: server CPU {cpu:.1f} % of one core over"
            f" {args.scale_seconds:g} s, RSS {rss:.0f} MB; one task triggered -> dispatched in"
            f" {values['scale_dispatch_ms']:.0f} ms, -> succeeded in {values['scale_done_ms']:.0f} ms;"
            f" {values['scale_disconnects']:.0f} disconnects; heartbeat round trip p50 / p99"
            f" {values['scale_heartbeat_p50_ms']:.0f} / {values['scale_heartbeat_p99_ms']:.0f} ms;"
            f" {values['scale_gc_pauses']:.0f} garbage collections,"
            f" {values['scale_gc_over_20ms']:.0f} over 20 ms"
        )
    print_goals(results)
    fields = summary(results)
    digits = {"ratio_celery": 2, "ratio_procrastinate": 2, "ratio_floor": 2}
    print("SUMMARY " + " ".join(f"{key}={_fmt(value, digits.get(key, 1))}" for key, value in fields.items()))


def print_goals(results: Results) -> None:
    """Each goal of the throughput work next to this run's figure."""
    s = summary(results)
    v = results.values
    list_p99 = (
        p50_p99(results.samples["list first page"])[1] if results.samples.get("list first page") else math.nan
    )
    start_p99 = p50_p99(results.samples["start_ms"])[1] if results.samples.get("start_ms") else math.nan
    heartbeat_p99 = v.get("scale_heartbeat_p99_ms", math.nan)
    bulk = results.rate("hetuflow_e2e_bulk")
    goals: list[tuple[str, float, str, Callable[[float], bool]]] = [
        ("end to end / Celery", s["ratio_celery"], ">= 2", lambda x: x >= 2),
        ("end to end / Procrastinate", s["ratio_procrastinate"], ">= 3", lambda x: x >= 3),
        ("end to end / multi-process floor", s["ratio_floor"], ">= 0.6", lambda x: x >= 0.6),
        ("drained / end to end", s["drain_per_s"] / s["e2e_per_s"], ">= 0.9", lambda x: x >= 0.9),
        ("end to end, bulk / Procrastinate", bulk / s["procrastinate_e2e_per_s"], ">= 3", lambda x: x >= 3),
        ("submit tasks/s", s["submit_per_s"], ">= 1000", lambda x: x >= 1000),
        ("trigger p50 ms", s["trigger_p50_ms"], "<= 5", lambda x: x <= 5),
        ("fire delay p50 ms", s["fire_p50_ms"], "<= 1", lambda x: x <= 1),
        ("fire delay p99 ms", s["fire_p99_ms"], "<= 5", lambda x: x <= 5),
        ("trigger -> start p99 ms (e2e)", start_p99, "<= 50", lambda x: x <= 50),
        ("dispatch tasks/s (simulated)", s["dispatch_per_s"], ">= 4000", lambda x: x >= 4000),
        ("idle agents: server CPU %", v.get("scale_cpu", math.nan), "<= 30", lambda x: x <= 30),
        ("idle agents: heartbeat p99 ms", heartbeat_p99, "<= 20", lambda x: x <= 20),
        ("idle agents: GC pauses > 20 ms", v.get("scale_gc_over_20ms", math.nan), "0", lambda x: x == 0),
        ("task list p99 ms", list_p99, "<= 50", lambda x: x <= 50),
        ("idle agent RSS MB", v.get("idle_agent_rss", math.nan) / MB, "<= 40", lambda x: x <= 40),
    ]
    print(f"\n{'goal':<36}{'this run':>10}  {'target':<9}")
    print("-" * 60)
    for label, value, target, met in goals:
        verdict = "-" if math.isnan(value) else ("met" if met(value) else "not met")
        print(f"{label:<36}{_fmt(value, 2):>10}  {target:<9}{verdict}")


if __name__ == "__main__":
    sys.exit(main())
