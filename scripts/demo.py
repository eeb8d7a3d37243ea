"""The hetuflow demo: one ``hetuflow-server standalone``, a job, a cron schedule and a few successful runs.

``nox -s demo`` runs it in a fresh virtualenv holding hetuflow-server[embedded,standalone], hetuflow-agent and
hetuflow-core[client]; ``python scripts/demo.py`` runs it in any environment that has them. It starts
``standalone`` on a free port of 127.0.0.1 with a new data directory (its banner shows on the terminal),
reads the admin token the server keeps in that directory, then, through the typed client
``hetuflow_core.client.Client``: creates a bash job, schedules it every ``--every`` seconds with a cron
schedule, waits until ``--runs`` runs succeeded, prints a summary (runs, their output and timings, a few
metrics) and stops the server with SIGTERM.

Exit status 0 when the runs succeeded and the server stopped cleanly; 1 otherwise (with the server's log).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hetuflow_core import CommandKind, JobConfig, JobCreate, ScheduleCreate, ScheduleKind
from hetuflow_core.api import TaskFilter
from hetuflow_core.client import Client, HetuflowClientError
from hetuflow_core.task import Task

T = TypeVar("T")

POLL_SECS = 0.2
STOP_TIMEOUT_SECS = 30.0
TOKEN_FILE = "standalone-admin.token"
SCRIPT = 'echo "run $HETUFLOW_ATTEMPT of task $HETUFLOW_TASK_ID, planned for $HETUFLOW_SCHEDULED_AT"'
METRICS = frozenset(
    {
        "hetuflow_tasks_dispatched_total",
        "hetuflow_tasks_completed_total",
        "hetuflow_dispatch_delay_seconds_count",
        "hetuflow_dispatch_delay_seconds_sum",
        "hetuflow_generated_slots_total",
        "hetuflow_agents_connected",
        "hetuflow_leader",
    }
)


class DemoFailed(Exception):
    """The demo could not show what it should; the message says what went wrong."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--runs", type=int, default=3, help="successful scheduled runs to wait for (default 3)"
    )
    parser.add_argument("--every", type=int, default=2, help="seconds between runs, 1..59 (default 2)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for it all (default 120)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory (default: removed)")
    args = parser.parse_args(argv)
    if not 1 <= args.every <= 59 or args.runs < 1:
        parser.error("--every must be within 1..59 and --runs at least 1")

    root = Path(tempfile.mkdtemp(prefix="hetuflow-demo-"))
    data_dir, log_path = root / "data", root / "standalone.log"
    port = _free_port()
    command = [sys.executable, "-m", "hetuflow_server", "standalone", "--data-dir", str(data_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--capacity", "2"]
    print(f"$ {' '.join(command)}", flush=True)
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stderr=log)  # its banner goes to our stdout
    try:
        _demo(f"http://127.0.0.1:{port}", data_dir / TOKEN_FILE, server, args)
    except (DemoFailed, HetuflowClientError) as exc:
        print(f"demo failed: {exc}\n--- standalone log ---\n{log_path.read_text()}", file=sys.stderr)
        _stop(server)
        return 1
    finally:
        status = _stop(server)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if status != 0:
        print(
            f"standalone exited with {status}\n--- standalone log ---\n{log_path.read_text()}",
            file=sys.stderr,
        )
        return 1
    print(f"standalone stopped cleanly (exit 0){f'; data kept in {data_dir}' if args.keep else ''}")
    return 0


def _demo(url: str, token_file: Path, server: subprocess.Popen[bytes], args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    # The token file is written before the local agent connects, the banner after: wait for both.
    token = _wait(lambda: _read(token_file), server, deadline, "the admin token")
    with Client(url, token) as hetuflow:
        _wait(
            lambda: any(a.status == "online" for a in hetuflow.list_agents().items), server, deadline, "agent"
        )
        job = hetuflow.create_job(
            JobCreate(name="demo-hello", config=JobConfig(command=CommandKind.BASH, script=SCRIPT))
        )
        schedule = hetuflow.create_schedule(
            ScheduleCreate(job_id=job.id, kind=ScheduleKind.CRON, cron_expression=f"*/{args.every} * * * * *")
        )
        print(f"created job {job.name} ({job.id}) and schedule '{schedule.cron_expression}' ({schedule.id})")
        started = time.monotonic()

        def succeeded() -> list[Task] | None:
            # Filtered by status: the schedule's tasks are planned ten minutes ahead, most of them pending.
            ended = TaskFilter(schedule_id=schedule.id, status=["failed", "cancelled", "skipped"], limit=1)
            for task in hetuflow.list_tasks(ended).items:
                raise DemoFailed(f"run {task.id} ended {task.status}: {task.error}")
            done = TaskFilter(schedule_id=schedule.id, status=["succeeded"], limit=args.runs)
            tasks = hetuflow.list_tasks(done).items
            return tasks if len(tasks) >= args.runs else None

        runs = sorted(
            _wait(succeeded, server, deadline, f"{args.runs} successful runs"), key=lambda t: t.scheduled_at
        )
        elapsed = time.monotonic() - started
        hetuflow.disable_schedule(schedule.id)
        print(f"\n{len(runs)} runs succeeded within {elapsed:.1f} s of creating the schedule:")
        for task in runs[: args.runs]:
            assert task.instance_id is not None
            instance = hetuflow.get_instance(task.instance_id)
            output = "".join(entry.content for entry in hetuflow.get_instance_logs(task.instance_id).items)
            late = (
                (instance.started_at - task.scheduled_at).total_seconds()
                if instance.started_at
                else float("nan")
            )
            duration = instance.metrics.duration_secs if instance.metrics else float("nan")
            when = f"{task.scheduled_at:%H:%M:%S} on {task.agent_id}"
            print(f"  {when}: started {late:+.3f} s after the planned time, ran {duration:.3f} s")
            print(f"    {output.strip()}")
    print("\nmetrics (GET /metrics):")
    for line in _metrics(url):
        if line.partition(" ")[0].partition("{")[0] in METRICS:
            print(f"  {line}")


def _wait(check: Callable[[], T | None], server: subprocess.Popen[bytes], deadline: float, what: str) -> T:
    while True:
        if server.poll() is not None:
            raise DemoFailed(f"standalone exited with {server.returncode} while waiting for {what}")
        try:
            result = check()
        except HetuflowClientError:  # still starting: connection refused, not ready
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out waiting for {what}")
        time.sleep(POLL_SECS)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def _metrics(url: str) -> list[str]:
    import httpx  # the client extra's dependency

    return [
        line for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines() if not line.startswith("#")
    ]


def _stop(server: subprocess.Popen[bytes]) -> int | None:
    if server.poll() is not None:
        return server.returncode
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(STOP_TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
