"""StatsBmc: the aggregate reads over recent tasks behind ``GET /api/v1/stats/...`` (``sql/stats.sql``)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.stats import AgentLoad, JobStats, TaskCounts
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import many, one
from hetuflow_server.infra.sql import query

__all__ = ["BucketCount", "StatsBmc"]

_RUNS = query("runs_per_bucket")
_NOW = query("task_counts_now")
_JOBS = query("job_stats")
_AGENTS = query("agent_stats")


class BucketCount(msgspec.Struct, kw_only=True):
    """Tasks of one status in one bucket of a window (bucket 0 is the oldest)."""

    bucket: int
    status: str
    n: int


class _Counted(msgspec.Struct, kw_only=True):
    total: int


class StatsBmc:
    """Aggregates over the newest tasks (at most ``cap``) scheduled in ``[since, until)``."""

    @staticmethod
    async def runs_per_bucket(
        conn: db.Connection,
        *,
        since: datetime,
        until: datetime,
        bucket_secs: int,
        cap: int,
        job_id: UUID | None = None,
    ) -> list[BucketCount]:
        """Task counts by bucket and status."""
        params = {"since": since, "until": until, "bucket_secs": bucket_secs, "cap": cap, "job_id": job_id}
        return many(await db.fetch_all(conn, _RUNS, params), BucketCount)

    @staticmethod
    async def counts_now(conn: db.Connection, *, cap: int) -> TaskCounts:
        """Tasks in each open state now, each stopping at ``cap``."""
        row = await db.fetch_one(conn, _NOW, {"cap": cap})
        return one({**(row or {}), "cap": cap}, TaskCounts)

    @staticmethod
    async def job_stats(
        conn: db.Connection,
        *,
        since: datetime,
        until: datetime,
        cap: int,
        timed_cap: int,
        limit: int,
        job_id: UUID | None = None,
    ) -> tuple[list[JobStats], int]:
        """Per-job aggregates (most tasks first, at most ``limit`` jobs; run times over the newest
        ``timed_cap`` finished tasks) and the number of tasks read."""
        params = {
            "since": since,
            "until": until,
            "cap": cap,
            "timed_cap": timed_cap,
            "limit": limit,
            "job_id": job_id,
        }
        rows = await db.fetch_all(conn, _JOBS, params)
        rated = [{**row, "failure_rate": _failure_rate(row["succeeded"], row["failed"])} for row in rows]
        items = many(rated, JobStats)
        return items, max((one(row, _Counted).total for row in rows), default=0)

    @staticmethod
    async def agent_stats(
        conn: db.Connection, *, since: datetime, until: datetime, cap: int, limit: int
    ) -> tuple[list[AgentLoad], int]:
        """Every agent's load (by id, at most ``limit``) and the number of tasks read."""
        params = {"since": since, "until": until, "cap": cap, "limit": limit}
        rows = await db.fetch_all(conn, _AGENTS, params)
        return many(rows, AgentLoad), max((one(row, _Counted).total for row in rows), default=0)


def _failure_rate(succeeded: int, failed: int) -> float | None:
    ended = succeeded + failed
    return failed / ended if ended else None
