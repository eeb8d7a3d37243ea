"""The Procrastinate app of the benchmark: PostgreSQL at ``BENCH_PROCRASTINATE_URL``, one (sync) task.

The worker is started as ``procrastinate --app _peers.procrastinate_app.app worker`` with ``bench/`` on
``PYTHONPATH``; it runs sync tasks in threads, ``--concurrency`` at a time.
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from _peers._record import run_recorded

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_URL", "")))


@app.task(name="bench.run_true")
def run_true(index: int, log_path: str) -> None:
    """Run ``bash -c true`` once."""
    run_recorded(index, log_path)
