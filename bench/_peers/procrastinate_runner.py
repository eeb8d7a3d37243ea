"""Procrastinate on the benchmark's workload: its own database in the same PostgreSQL as hetuflow, and a
``procrastinate worker --concurrency N`` process (sync tasks run in its threads), timed in two modes.

- **drained**: every task is deferred (``batch_defer``, 1,000 per call) while no worker runs; then the
  worker starts. The rate is the count over the time from the first task's start to the last task's end.
- **end to end**: the worker runs (one warm-up task went through it); the tasks are deferred in batches of
  1,000, its bulk API. The rate is the count over the time from the first submit to the last task's end.

Besides the task records, the job table must say every job succeeded.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from _peers._process import bench_env, wait_records, worker
from _peers._record import ExactlyOnceError

DATABASE = "hetuflow_bench_procrastinate"
BATCH = 1000


def create_database(server_url: str) -> str:
    """A fresh database for Procrastinate next to the one at ``server_url``; returns its conninfo."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return psycopg.conninfo.make_conninfo(server_url, dbname=DATABASE)


class Procrastinate:
    """Procrastinate on one database: the app, its task, and the two timed modes."""

    def __init__(self, conninfo: str, root: Path, concurrency: int) -> None:
        os.environ["BENCH_PROCRASTINATE_URL"] = conninfo  # read when the app module is first imported
        from _peers import procrastinate_app

        self._module: Any = procrastinate_app
        self._conninfo = conninfo
        self._root = root
        self._concurrency = concurrency
        self._runs = 0
        with self._module.app.open():
            self._module.app.schema_manager.apply_schema()

    def _worker(self) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        args = ["procrastinate", "--app", "_peers.procrastinate_app.app", "--log-level", "warning", "worker"]
        args += ["--concurrency", str(self._concurrency)]
        env = bench_env(BENCH_PROCRASTINATE_URL=self._conninfo)
        return worker(args, env, self._root / "procrastinate-worker.log")

    def _log(self, mode: str) -> Path:
        self._runs += 1
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_jobs RESTART IDENTITY CASCADE")
        return self._root / f"procrastinate-{mode}-{self._runs}.log"

    def _defer(self, count: int, log: Path) -> None:
        for begin in range(0, count, BATCH):
            batch = [
                {"index": index, "log_path": str(log)} for index in range(begin, min(begin + BATCH, count))
            ]
            self._module.run_true.batch_defer(*batch)

    def _check_jobs(self, mode: str, count: int) -> None:
        with psycopg.connect(self._conninfo) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM procrastinate_jobs"
                " WHERE (args->>'index')::int >= 0"
            ).fetchone()
        if row is None or row != (count, count):
            raise ExactlyOnceError(f"procrastinate {mode}: job table says {row} (jobs, succeeded) of {count}")

    def drained(self, count: int) -> float:
        log = self._log("drained")
        with self._module.app.open():
            self._defer(count, log)
        with self._worker() as process:
            record = wait_records(log, count, process)
            time.sleep(0.2)  # the worker marks the last jobs succeeded after their function returned
        record.check_exactly_once("procrastinate drained", count)
        self._check_jobs("drained", count)
        return count / (record.last_end - record.first_start)

    def end_to_end(self, count: int) -> float:
        log = self._log("e2e")
        with self._module.app.open(), self._worker() as process:
            warm_log = self._root / "procrastinate-warm-up.log"
            self._module.run_true.defer(index=-1, log_path=str(warm_log))
            wait_records(warm_log, 1, process)
            warm_log.unlink()
            first_submit = time.time()
            self._defer(count, log)
            record = wait_records(log, count, process)
            time.sleep(0.2)
        record.check_exactly_once("procrastinate end to end", count)
        self._check_jobs("end to end", count)
        return count / (record.last_end - first_submit)
