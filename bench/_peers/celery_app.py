"""The Celery app of the benchmark: Redis as broker and result backend (``BENCH_REDIS_URL``), one task.

The worker is started as ``celery -A _peers.celery_app worker`` with ``bench/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import os

from celery import Celery

from _peers._record import run_recorded

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("hetuflow_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="bench.run_true")  # type: ignore[untyped-decorator]  # celery ships no type hints
def run_true(index: int, log_path: str) -> int:
    """Run ``bash -c true`` once; the result is the index, so the caller can wait for it."""
    run_recorded(index, log_path)
    return index
