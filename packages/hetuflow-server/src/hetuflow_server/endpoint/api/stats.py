"""``/api/v1/stats``: aggregates over recent tasks for dashboards (runs per hour, per-job failure rate and run
times, agents' load). Each answer reads a bounded slice of the history: see ``hetuflow_core.stats``."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from hetuflow_core.stats import AgentStats, JobRunStats, RunStats, StatsWindow
from hetuflow_server.endpoint.api.operation import Context, Operations
from hetuflow_server.service.stats import MAX_JOBS

__all__ = ["operations"]

operations = Operations("stats", "Aggregates over recent tasks, for dashboards")

Window = Annotated[StatsWindow, msgspec.Meta(description="The last 24 hours or the last 7 days, up to now")]


class RunStatsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/stats/runs``."""

    window: Window = "24h"
    job_id: UUID | None = None


class JobStatsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/stats/jobs``."""

    window: Window = "24h"
    job_id: UUID | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_JOBS, description="Largest number of jobs")] = 20


class AgentStatsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/stats/agents``."""

    window: Window = "24h"


@operations.get("/stats/runs", summary="Runs per hour")
async def run_stats(ctx: Context, query: RunStatsQuery) -> RunStats:
    """Tasks scheduled in each hour of the window (optionally of one job) by what became of them so far —
    succeeded, failed, cancelled, skipped, running, waiting — oldest hour first; and the tasks open right now
    (running, dispatched, due, planned ahead, waiting for a retry), each count capped."""
    return await ctx.services.stats.runs(query.window, job_id=query.job_id)


@operations.get("/stats/jobs", summary="Failure rate and run times per job")
async def job_stats(ctx: Context, query: JobStatsQuery) -> JobRunStats:
    """Per job with tasks in the window (the ``limit`` with the most, or just ``job_id``): tasks by outcome,
    failure rate (failed among succeeded and failed) and the median and 95th percentile run time of their
    latest attempts."""
    return await ctx.services.stats.jobs(query.window, job_id=query.job_id, limit=query.limit)


@operations.get("/stats/agents", summary="Load per agent")
async def agent_stats(ctx: Context, query: AgentStatsQuery) -> AgentStats:
    """Every agent: status, capacity, attempts on it now, and the tasks of the window it ran."""
    return await ctx.services.stats.agents(query.window)
