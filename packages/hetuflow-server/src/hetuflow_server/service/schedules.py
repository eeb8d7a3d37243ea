"""ScheduleService: create, read, change, enable/disable and delete schedules, and read their fire-slot
record.

Every write validates the schedule as a whole through ``triggers.upcoming.schedule_trigger`` (the same code
the generator and the preview use), so a stored schedule always has a usable rule; a bad field is
``InvalidInput`` naming its path (``$.cron_expression``, ``$.timezone`` ...). Disabling a schedule, or
changing its rule, removes the not-yet-dispatched future tasks it generated and rewinds its generation cursor
to now; deleting it removes all of its tasks that never started and its slot record, and leaves its past tasks
unlinked. Disabling or deleting a daemon schedule also cancels its live run (``service._daemons``).

A schedule targets a job (``job_id``) or a flow (``flow_id``): a flow schedule of kind cron, interval, once
or event starts one flow run per fire (the generator and the event service start it; ``service._flow_runs``).
The kind ``flow`` is refused: the target says what runs, the kind says when. Daemon schedules are for jobs
and take no window fields: they run while enabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.enums import ScheduleKind, ScheduleStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.schedule import Schedule, ScheduleCreate, ScheduleSlot, ScheduleUpdate
from hetuflow_server.errors import NotFound
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service._daemons import stop_daemons
from hetuflow_server.service._paging import DEFAULT_LIMIT, decode_id_cursor, decode_time_cursor, read_page
from hetuflow_server.service._validation import invalid, revalidate
from hetuflow_server.triggers import upcoming

__all__ = ["ScheduleService", "validate_schedule"]

# Fields that define when a schedule fires: changing one replans its future.
_RULE_FIELDS = ("cron_expression", "timezone", "interval_secs", "start_time", "end_time", "max_count")
_WINDOW_FIELDS = ("start_time", "end_time", "max_count")


def validate_schedule(schedule: Schedule | ScheduleCreate) -> None:
    """Raise InvalidInput (with the field's path) unless the fields make a valid schedule of its kind."""
    if schedule.kind is ScheduleKind.FLOW:
        raise invalid(
            "$.kind",
            "the kind says when a schedule fires, not what it runs: to schedule a flow, give its flow_id "
            "(instead of job_id) with kind cron, interval, once or event; to run one now, "
            "POST /api/v1/flows/{flow_id}/run",
        )
    if schedule.job_id is None and schedule.flow_id is None:
        raise invalid("$.job_id", "give the job_id or the flow_id the schedule runs")
    if schedule.job_id is not None and schedule.flow_id is not None:
        raise invalid("$.flow_id", "give job_id or flow_id, not both")
    if schedule.flow_id is not None and schedule.kind is ScheduleKind.DAEMON:
        raise invalid("$.kind", "a flow cannot run as a daemon; use cron, interval, once or event")
    if schedule.kind is ScheduleKind.DAEMON:
        for field in _WINDOW_FIELDS:
            if getattr(schedule, field) is not None:
                raise invalid(f"$.{field}", "daemon schedules take none: a daemon runs while it is enabled")
    upcoming.schedule_trigger(schedule)
    if schedule.kind is ScheduleKind.EVENT and schedule.event_name is None:
        raise invalid("$.event_name", "required for event schedules")
    if schedule.kind is not ScheduleKind.EVENT and schedule.event_name is not None:
        raise invalid("$.event_name", f"only event schedules take one, this one is {schedule.kind}")


class ScheduleService:
    """Schedules: when a job runs."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def create(self, data: ScheduleCreate) -> Schedule:
        """Store a new schedule of a live job (a missing job is InvalidInput at ``$.job_id``)."""
        data = revalidate(data, ScheduleCreate)
        if data.status is ScheduleStatus.EXPIRED:
            raise invalid("$.status", "expired is set by the server when a schedule ends")
        validate_schedule(data)
        async with self._db.transaction() as conn:
            # Locked: a concurrent delete of the job or flow cannot slip between this check and the insert.
            if data.job_id is not None:
                try:
                    await bmc.JobBmc.get(conn, data.job_id, lock=True)
                except NotFound:
                    raise invalid("$.job_id", f"no job {data.job_id}") from None
            elif data.flow_id is not None:
                try:
                    await bmc.FlowBmc.get(conn, data.flow_id, lock=True)
                except NotFound:
                    raise invalid("$.flow_id", f"no flow {data.flow_id}") from None
            schedule = await bmc.ScheduleBmc.insert(conn, uuid7(), data)
            await _changed(conn, schedule)
        return schedule

    async def get(self, schedule_id: UUID) -> Schedule:
        """The schedule, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.ScheduleBmc.get(conn, schedule_id)

    async def list(
        self,
        *,
        job_id: UUID | None = None,
        flow_id: UUID | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[Schedule]:
        """A page of schedules in creation order, optionally of one job or one flow."""
        return await read_page(
            self._db,
            cursor,
            limit,
            decode=decode_id_cursor,
            fetch=lambda conn, after, n: bmc.ScheduleBmc.select_page(
                conn, job_id=job_id, flow_id=flow_id, after_id=after, limit=n
            ),
            key=lambda schedule: (schedule.id,),
        )

    async def update(self, schedule_id: UUID, patch: ScheduleUpdate) -> Schedule:
        """Change the given fields (PATCH); the result must still be a valid schedule of its kind."""
        patch = revalidate(patch, ScheduleUpdate)
        if patch.status is ScheduleStatus.EXPIRED:
            raise invalid("$.status", "expired is set by the server when a schedule ends")
        changes = {
            field: value
            for field, value in msgspec.structs.asdict(patch).items()
            if value is not msgspec.UNSET
        }
        async with self._db.transaction() as conn:
            current = await bmc.ScheduleBmc.get(conn, schedule_id, lock=True)
            merged = msgspec.structs.replace(current, **changes)
            validate_schedule(merged)
            rule_changed = any(getattr(merged, f) != getattr(current, f) for f in _RULE_FIELDS)
            disabling = (
                merged.status is not ScheduleStatus.ENABLED and current.status is ScheduleStatus.ENABLED
            )
            if rule_changed or disabling:
                await bmc.TaskBmc.delete_unstarted_of_schedule(conn, schedule_id, include_due=False)
            if disabling:
                await stop_daemons(conn, schedule_id=schedule_id, reason="daemon schedule disabled")
            updated = await bmc.ScheduleBmc.update(conn, merged, reset_cursor=rule_changed or disabling)
            await _changed(conn, updated)
        return updated

    async def enable(self, schedule_id: UUID) -> Schedule:
        """disabled or expired → enabled (no-op when enabled)."""
        return await self._set_status(
            schedule_id, ScheduleStatus.ENABLED, (ScheduleStatus.DISABLED, ScheduleStatus.EXPIRED)
        )

    async def disable(self, schedule_id: UUID) -> Schedule:
        """enabled or expired → disabled, removing its unstarted future tasks (no-op if disabled)."""
        return await self._set_status(
            schedule_id, ScheduleStatus.DISABLED, (ScheduleStatus.ENABLED, ScheduleStatus.EXPIRED)
        )

    async def _set_status(
        self, schedule_id: UUID, status: ScheduleStatus, allowed: tuple[ScheduleStatus, ...]
    ) -> Schedule:
        async with self._db.transaction() as conn:
            current = await bmc.ScheduleBmc.get(conn, schedule_id, lock=True)
            if current.status is status:
                return current
            if status is ScheduleStatus.DISABLED:
                await bmc.TaskBmc.delete_unstarted_of_schedule(conn, schedule_id, include_due=False)
                await stop_daemons(conn, schedule_id=schedule_id, reason="daemon schedule disabled")
            # The row is locked and its state was just read, so the conditional update cannot miss.
            changed = await bmc.ScheduleBmc.set_status(conn, schedule_id, status, allowed=allowed)
            assert changed is not None
            await _changed(conn, changed)
        return changed

    async def delete(self, schedule_id: UUID) -> None:
        """Delete the schedule, its never-started tasks and its slot record; past tasks stay, unlinked."""
        async with self._db.transaction() as conn:
            current = await bmc.ScheduleBmc.get(conn, schedule_id, lock=True)
            await stop_daemons(conn, schedule_id=schedule_id, reason="daemon schedule deleted")
            await bmc.TaskBmc.delete_unstarted_of_schedule(conn, schedule_id, include_due=True)
            await bmc.ScheduleBmc.delete(conn, schedule_id)
            await _changed(conn, current)

    async def list_slots(
        self, schedule_id: UUID, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT
    ) -> Page[ScheduleSlot]:
        """A page of the schedule's fire-slot record, latest slot first; NotFound for an unknown schedule."""

        async def fetch(conn: db.Connection, before: datetime | None, n: int) -> list[ScheduleSlot]:
            await bmc.ScheduleBmc.get(conn, schedule_id)  # an unknown schedule is NotFound, no empty page
            return await bmc.SlotBmc.select_page(conn, schedule_id, before=before, limit=n)

        return await read_page(
            self._db,
            cursor,
            limit,
            decode=decode_time_cursor,
            fetch=fetch,
            key=lambda slot: (slot.scheduled_at,),
        )

    async def next_fire_times(
        self, schedule_id: UUID, *, count: int, after: datetime | None = None
    ) -> tuple[Schedule, Sequence[datetime]]:
        """The schedule and its next ``count`` fire times strictly after ``after`` (default now), in UTC.

        Empty unless the schedule is enabled and has a clock rule. Slots the generator already planned count
        toward ``max_count`` once (``triggers.upcoming``). NotFound for an unknown schedule.
        """
        schedule = await self.get(schedule_id)
        moment = datetime.now(UTC) if after is None else after
        return schedule, upcoming.upcoming_fire_times(schedule, after=moment, count=count)


async def _changed(conn: db.Connection, schedule: Schedule) -> None:
    """Wake the generator and the daemon supervisor about ``schedule`` (naming its job or flow)."""
    target = {"job_id": schedule.job_id} if schedule.job_id is not None else {}
    if schedule.flow_id is not None:
        target = {"flow_id": schedule.flow_id}
    await notify.schedules_changed(conn, schedule_id=schedule.id, **target)
