"""SlotTaskBmc: statements that see tasks as the slots of their schedules.

The task generator lists its work and learns which slots another generator already planned; the dispatcher's
admission step reads the misfire settings of the schedules it is about to start, how many later late slots
wait behind a late one, and which runs of those schedules are still going (overlap policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import MisfirePolicy, ScheduleKind
from hetuflow_core.schedule import Schedule
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import many
from hetuflow_server.infra.sql import query

__all__ = ["LateSlot", "LiveRun", "MisfireSettings", "SlotTaskBmc"]

_GENERATION_WORK = query("list_generation_work")
_TASKS_AT = query("slot_tasks_at")
_COUNT_AFTER = query("count_slot_tasks_after")
_MISFIRE_RULES = query("misfire_rules")
_LATER_LATE = query("count_later_late_slots")
_LIVE_RUNS = query("live_runs_of_schedules")
_NEXT_GUARDED = query("next_guarded_slot")


class MisfireSettings(msgspec.Struct, kw_only=True, frozen=True):
    """The misfire policy fields of one schedule, and its kind."""

    id: UUID
    kind: ScheduleKind
    misfire_policy: MisfirePolicy
    misfire_grace_secs: float
    misfire_max_runs: int


class LateSlot(msgspec.Struct, kw_only=True, frozen=True):
    """A slot task judged late, and the instant before which a slot of its schedule counts as late."""

    task_id: UUID
    schedule_id: UUID
    scheduled_at: datetime
    cutoff: datetime
    pin: str | None = None
    """The agent the task is pinned to: only later slots with the same pin count."""


class LiveRun(msgspec.Struct, kw_only=True, frozen=True):
    """A run of a schedule that is going now (its task is dispatched or running)."""

    task_id: UUID
    schedule_id: UUID
    scheduled_at: datetime
    instance_id: UUID | None
    agent_id: str | None
    pin: str | None = None
    """The agent the task is pinned to (``config.target.agent_id``), if any."""


class SlotTaskBmc:
    """Schedule slots and their tasks."""

    @staticmethod
    async def generation_work(
        conn: db.Connection, *, until: datetime, after_id: UUID | None, limit: int
    ) -> list[Schedule]:
        """Up to ``limit`` enabled clock schedules of enabled jobs whose cursor is unset or before ``until``,
        in id order after ``after_id``."""
        rows = await db.fetch_all(
            conn, _GENERATION_WORK, {"until": until, "after_id": after_id, "limit": limit}
        )
        return many(rows, Schedule)

    @staticmethod
    async def tasks_at(
        conn: db.Connection, schedule_id: UUID, scheduled_ats: Sequence[datetime]
    ) -> dict[datetime, UUID]:
        """The ids of the tasks the schedule already has at ``scheduled_ats``, by slot."""
        if not scheduled_ats:
            return {}
        params = {"schedule_id": schedule_id, "scheduled_ats": list(scheduled_ats)}
        return {row["scheduled_at"]: row["id"] for row in await db.fetch_all(conn, _TASKS_AT, params)}

    @staticmethod
    async def count_after(conn: db.Connection, schedule_id: UUID, after: datetime) -> int:
        """How many tasks the schedule has at slots after ``after``."""
        row = await db.fetch_one(conn, _COUNT_AFTER, {"schedule_id": schedule_id, "after": after})
        return 0 if row is None else int(row["n"])

    @staticmethod
    async def misfire_settings(
        conn: db.Connection, schedule_ids: Sequence[UUID]
    ) -> dict[UUID, MisfireSettings]:
        """The misfire settings of the existing schedules among ``schedule_ids``."""
        if not schedule_ids:
            return {}
        rows = await db.fetch_all(conn, _MISFIRE_RULES, {"ids": sorted(set(schedule_ids))})
        return {settings.id: settings for settings in many(rows, MisfireSettings)}

    @staticmethod
    async def later_late_counts(conn: db.Connection, slots: Sequence[LateSlot]) -> dict[UUID, int]:
        """For each late slot task: how many later slots of its schedule with the same pin, before its cutoff,
        still wait for their first attempt."""
        if not slots:
            return {}
        params = {
            "ids": [s.task_id for s in slots],
            "schedule_ids": [s.schedule_id for s in slots],
            "scheduled_ats": [s.scheduled_at for s in slots],
            "cutoffs": [s.cutoff for s in slots],
            "pins": [s.pin or "" for s in slots],
        }
        return {row["id"]: int(row["later"]) for row in await db.fetch_all(conn, _LATER_LATE, params)}

    @staticmethod
    async def live_runs(conn: db.Connection, schedule_ids: Sequence[UUID]) -> list[LiveRun]:
        """Dispatched or running tasks of ``schedule_ids``, by schedule and slot."""
        if not schedule_ids:
            return []
        rows = await db.fetch_all(conn, _LIVE_RUNS, {"schedule_ids": sorted(set(schedule_ids))})
        return many(rows, LiveRun)

    @staticmethod
    async def next_guarded_at(conn: db.Connection, *, after: datetime) -> datetime | None:
        """When the next pending slot of a forbid/replace job comes due after ``after`` (None: none waits)."""
        row = await db.fetch_one(conn, _NEXT_GUARDED, {"after": after})
        return None if row is None else row["at"]
