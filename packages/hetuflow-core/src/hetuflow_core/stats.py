"""Aggregates over recent tasks, as ``GET /api/v1/stats/...`` answers them: runs per hour by outcome, each
job's failure rate and durations, each agent's load, and how many tasks wait or run right now.

The server computes these over a bounded slice of the task table (a window ending now, and at most
``STATS_MAX_TASKS`` of its newest tasks), so the answers stay cheap however long the history grows;
``sampled`` says when that cap cut the window short.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal
from uuid import UUID

import msgspec

__all__ = [
    "STATS_MAX_TASKS",
    "STATS_WINDOWS",
    "AgentLoad",
    "AgentStats",
    "JobRunStats",
    "JobStats",
    "RunBucket",
    "RunStats",
    "StatsWindow",
    "TaskCounts",
]

StatsWindow = Literal["24h", "7d"]
STATS_WINDOWS: Final[dict[str, int]] = {"24h": 24 * 3600, "7d": 7 * 24 * 3600}
"""Seconds covered by each window a stats query may name."""
STATS_MAX_TASKS: Final = 200_000
"""The most tasks (newest first) one stats answer reads from its window."""


class RunBucket(msgspec.Struct, kw_only=True):
    """Tasks scheduled within one hour, by what became of them (so far)."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    running: int = 0
    """dispatched or running"""
    waiting: int = 0
    """pending (due, no agent took it yet) or waiting for a retry"""


class TaskCounts(msgspec.Struct, kw_only=True):
    """Tasks in each open state right now; each count stops at ``cap`` (then read it as "cap or more")."""

    running: int
    dispatched: int
    due: int
    """pending and due: waiting for an agent"""
    planned: int
    """pending and not yet due: planned ahead by schedules"""
    waiting_retry: int
    cap: int


class RunStats(msgspec.Struct, kw_only=True):
    """Runs per hour over a window, oldest hour first, every hour present (zeros when nothing was
    scheduled)."""

    window: StatsWindow
    since: datetime
    until: datetime
    bucket_secs: int
    sampled: bool
    buckets: list[RunBucket]
    now: TaskCounts


class JobStats(msgspec.Struct, kw_only=True):
    """One job's tasks in the window: outcomes, failure rate and attempt durations."""

    job_id: UUID
    runs: int
    """tasks scheduled in the window, whatever their state"""
    succeeded: int
    failed: int
    cancelled: int
    skipped: int
    failure_rate: float | None
    """failed / (succeeded + failed); None while none of them ended either way"""
    p50_secs: float | None
    """median run time (start to end) of the latest attempts of the window's newest 10 000 succeeded or failed
    tasks; None without one"""
    p95_secs: float | None


class JobRunStats(msgspec.Struct, kw_only=True):
    """Per-job aggregates over a window, most runs first."""

    window: StatsWindow
    since: datetime
    until: datetime
    sampled: bool
    items: list[JobStats]


class AgentLoad(msgspec.Struct, kw_only=True):
    """One agent: how busy it is now and how many tasks it took in the window."""

    agent_id: str
    status: str
    capacity: int
    running: int
    """attempts on it now (dispatched or running)"""
    tasks: int
    """tasks of the window it ran last"""


class AgentStats(msgspec.Struct, kw_only=True):
    """Every agent's load (by id), over a window."""

    window: StatsWindow
    since: datetime
    until: datetime
    sampled: bool
    items: list[AgentLoad]
