"""StatsService: aggregates over recent tasks for dashboards — runs per hour by outcome, per-job failure rate
and durations, per-agent load, and the open tasks right now.

Every answer reads a bounded slice of the history: the tasks scheduled in a window that ends now (24 hours or
7 days), newest first, at most ``STATS_MAX_TASKS`` of them. The cost therefore follows the window and the cap,
never the size of the task table; ``sampled`` in an answer says that the cap cut the window short.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from hetuflow_core.stats import (
    STATS_MAX_TASKS,
    STATS_WINDOWS,
    AgentStats,
    JobRunStats,
    RunBucket,
    RunStats,
    StatsWindow,
)
from hetuflow_server.infra import bmc
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service._validation import invalid

__all__ = ["BUCKET_SECS", "OPEN_COUNT_CAP", "TIMED_TASKS", "StatsService"]

BUCKET_SECS: Final = 3600
"""Runs are counted per hour, for both windows (24 or 168 buckets)."""
OPEN_COUNT_CAP: Final = 10_000
TIMED_TASKS: Final = 10_000
"""Run-time percentiles come from the newest this many succeeded or failed tasks of the window (a lookup of
its latest attempt each): plenty for a median and a 95th percentile, and a bound on the work."""
"""Each count of open tasks stops here: a dashboard needs "very many", not the exact number."""
MAX_JOBS: Final = 100
MAX_AGENTS: Final = 1000

# Which bucket field each task status adds to.
_OUTCOME: Final = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "dispatched": "running",
    "running": "running",
    "pending": "waiting",
    "waiting_retry": "waiting",
}


class StatsService:
    """Dashboard aggregates, each one read-only transaction."""

    def __init__(self, db: ModelManager, *, max_tasks: int = STATS_MAX_TASKS) -> None:
        self._db = db
        self._max_tasks = max_tasks

    async def runs(self, window: StatsWindow, *, job_id: UUID | None = None) -> RunStats:
        """Tasks scheduled in each hour of ``window`` by outcome so far, and the open tasks now."""
        since, until = _bounds(window)
        async with self._db.transaction() as conn:
            counted = await bmc.StatsBmc.runs_per_bucket(
                conn, since=since, until=until, bucket_secs=BUCKET_SECS, cap=self._max_tasks, job_id=job_id
            )
            now = await bmc.StatsBmc.counts_now(conn, cap=OPEN_COUNT_CAP)
        buckets = [
            RunBucket(start=since + timedelta(seconds=index * BUCKET_SECS))
            for index in range(STATS_WINDOWS[window] // BUCKET_SECS)
        ]
        for row in counted:
            bucket = buckets[min(max(row.bucket, 0), len(buckets) - 1)]
            field = _OUTCOME.get(row.status, "waiting")
            setattr(bucket, field, getattr(bucket, field) + row.n)
        return RunStats(
            window=window,
            since=since,
            until=until,
            bucket_secs=BUCKET_SECS,
            sampled=sum(row.n for row in counted) >= self._max_tasks,
            buckets=buckets,
            now=now,
        )

    async def jobs(self, window: StatsWindow, *, job_id: UUID | None = None, limit: int = 20) -> JobRunStats:
        """Per job of ``window`` (the ``limit`` jobs with most tasks): outcomes, failure rate, p50/p95 run
        time."""
        if not 1 <= limit <= MAX_JOBS:
            raise invalid("$.limit", f"must be 1..{MAX_JOBS}")
        since, until = _bounds(window)
        async with self._db.transaction() as conn:
            items, total = await bmc.StatsBmc.job_stats(
                conn,
                since=since,
                until=until,
                cap=self._max_tasks,
                timed_cap=TIMED_TASKS,
                limit=limit,
                job_id=job_id,
            )
        return JobRunStats(
            window=window, since=since, until=until, sampled=total >= self._max_tasks, items=items
        )

    async def agents(self, window: StatsWindow) -> AgentStats:
        """Every agent's capacity, attempts on it now and tasks of ``window`` it ran."""
        since, until = _bounds(window)
        async with self._db.transaction() as conn:
            items, total = await bmc.StatsBmc.agent_stats(
                conn, since=since, until=until, cap=self._max_tasks, limit=MAX_AGENTS
            )
        sampled = total >= self._max_tasks
        return AgentStats(window=window, since=since, until=until, sampled=sampled, items=items)


def _bounds(window: StatsWindow) -> tuple[datetime, datetime]:
    # From a whole hour, so consecutive answers share their buckets; the last bucket is the hour going on now,
    # up to now: tasks planned for later in this hour have not happened yet.
    if window not in STATS_WINDOWS:
        raise invalid("$.window", f"must be one of {', '.join(STATS_WINDOWS)}")
    now = datetime.now(UTC)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(seconds=BUCKET_SECS)
    return next_hour - timedelta(seconds=STATS_WINDOWS[window]), now
