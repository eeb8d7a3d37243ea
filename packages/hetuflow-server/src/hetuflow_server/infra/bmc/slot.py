"""SlotBmc: statements on ``sched_schedule_slot``, the record of what became of every due slot."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import SlotOutcome
from hetuflow_core.schedule import ScheduleSlot
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import many
from hetuflow_server.infra.sql import query

__all__ = ["NewSlot", "SlotBmc"]

_RECORD = query("record_slots")
_LIST = query("list_slots")


class NewSlot(msgspec.Struct, kw_only=True, frozen=True):
    """A slot outcome to record (``ran`` needs the task id, or for a flow schedule the run's)."""

    schedule_id: UUID
    scheduled_at: datetime
    outcome: SlotOutcome
    task_id: UUID | None = None
    flow_run_id: UUID | None = None
    detail: str | None = None


class SlotBmc:
    """Fire-slot records of schedules."""

    @staticmethod
    async def record_many(
        conn: db.Connection, slots: Sequence[NewSlot], *, overwrite: bool = False
    ) -> list[ScheduleSlot]:
        """Record slots in one statement; existing records are kept unless ``overwrite``. Returns those
        written.

        A slot is recorded once: of several records for one slot (the copies of a broadcast slot, one per
        agent) the first given is kept — one statement cannot write a row twice.
        """
        unique: dict[tuple[UUID, datetime], NewSlot] = {}
        for slot in slots:
            unique.setdefault((slot.schedule_id, slot.scheduled_at), slot)
        slots = list(unique.values())
        if not slots:
            return []
        params = {
            "schedule_ids": [s.schedule_id for s in slots],
            "scheduled_ats": [s.scheduled_at for s in slots],
            "outcomes": [s.outcome.value for s in slots],
            "task_ids": [s.task_id for s in slots],
            "flow_run_ids": [s.flow_run_id for s in slots],
            "details": [s.detail for s in slots],
            "overwrite": overwrite,
        }
        return many(await db.fetch_all(conn, _RECORD, params), ScheduleSlot)

    @staticmethod
    async def select_page(
        conn: db.Connection, schedule_id: UUID, *, before: datetime | None, limit: int
    ) -> list[ScheduleSlot]:
        """Up to ``limit`` slots of a schedule, latest first, strictly before ``before``."""
        params = {"schedule_id": schedule_id, "before": before, "limit": limit}
        return many(await db.fetch_all(conn, _LIST, params), ScheduleSlot)
