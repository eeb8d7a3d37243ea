"""ScheduleBmc: statements on ``sched_schedule``, including what the generator, the admission step and the
daemon supervisor read of schedules, and the generator's cursor moves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import MisfirePolicy, ScheduleKind, ScheduleStatus
from hetuflow_core.job import JobConfig
from hetuflow_core.schedule import Schedule, ScheduleCreate
from hetuflow_core.types import Parameters
from hetuflow_server.errors import NotFound
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import jsonb, many, one, required
from hetuflow_server.infra.sql import query

__all__ = [
    "DaemonVacancy",
    "EventTarget",
    "FlowEventTarget",
    "GeneratableSchedule",
    "MisfireSettings",
    "ScheduleBmc",
]

_INSERT = query("insert_schedule")
_GET = query("get_schedule")
_LOCK = query("lock_schedule")
_LIST = query("list_schedules")
_UPDATE = query("update_schedule")
_SET_STATUS = query("set_schedule_status")
_REWIND_JOB = query("rewind_job_schedules")
_DISABLE_JOB = query("disable_job_schedules")
_DISABLE_FLOW = query("disable_flow_schedules")
_DELETE = query("delete_schedule")
_EVENT_TARGETS = query("list_event_targets")
_FLOW_EVENT_TARGETS = query("list_flow_event_targets")
_GENERATABLE = query("list_generatable_schedules")
_ADVANCE = query("advance_schedule")
_GENERATION_WORK = query("list_generation_work")
_MISFIRE_RULES = query("misfire_rules")
_DAEMON_VACANCIES = query("list_daemon_vacancies")


class EventTarget(msgspec.Struct, kw_only=True, frozen=True):
    """An enabled event schedule listening to a name, with what a task for it needs."""

    schedule_id: UUID
    job_id: UUID
    parameters: Parameters
    config: JobConfig


class FlowEventTarget(msgspec.Struct, kw_only=True, frozen=True):
    """An enabled event schedule of a flow listening to a name."""

    schedule_id: UUID
    flow_id: UUID
    parameters: Parameters


class GeneratableSchedule(msgspec.Struct, kw_only=True, frozen=True):
    """A clock schedule due for generation and the config snapshot its tasks get."""

    schedule: Schedule
    job_config: JobConfig


class MisfireSettings(msgspec.Struct, kw_only=True, frozen=True):
    """The misfire policy fields and start deadline of one schedule, and its kind."""

    id: UUID
    kind: ScheduleKind
    misfire_policy: MisfirePolicy
    misfire_grace_secs: float
    misfire_max_runs: int
    start_deadline_secs: float | None


class DaemonVacancy(msgspec.Struct, kw_only=True, frozen=True):
    """A daemon run that should be live and is not: its schedule, job and pinned agent (None: any agent)."""

    schedule_id: UUID
    job_id: UUID
    pin: str | None


class ScheduleBmc:
    """Schedules: when a job runs."""

    @staticmethod
    async def insert(conn: db.Connection, schedule_id: UUID, data: ScheduleCreate) -> Schedule:
        """Store a new schedule (the job must exist: a missing one is InvalidInput at ``$.job_id``)."""
        params = msgspec.structs.asdict(data)
        params.update(
            id=schedule_id,
            kind=data.kind.value,
            parameters=jsonb(data.parameters),
            misfire_policy=data.misfire_policy.value,
            status=data.status.value,
        )
        return required(await db.fetch_one(conn, _INSERT, params), Schedule, "schedule", schedule_id)

    @staticmethod
    async def get(conn: db.Connection, schedule_id: UUID, *, lock: bool = False) -> Schedule:
        """The schedule (locked FOR UPDATE when ``lock``), or NotFound."""
        row = await db.fetch_one(conn, _LOCK if lock else _GET, {"id": schedule_id})
        return required(row, Schedule, "schedule", schedule_id)

    @staticmethod
    async def select_page(
        conn: db.Connection,
        *,
        job_id: UUID | None,
        after_id: UUID | None,
        limit: int,
        flow_id: UUID | None = None,
    ) -> list[Schedule]:
        """Up to ``limit`` schedules after ``after_id`` in id order, optionally of one job or flow."""
        params = {"job_id": job_id, "flow_id": flow_id, "after_id": after_id, "limit": limit}
        rows = await db.fetch_all(conn, _LIST, params)
        return many(rows, Schedule)

    @staticmethod
    async def update(conn: db.Connection, schedule: Schedule, *, reset_cursor: bool) -> Schedule:
        """Write every user-settable field of ``schedule``; ``reset_cursor`` rewinds generation to now."""
        params = {
            "id": schedule.id,
            "cron_expression": schedule.cron_expression,
            "timezone": schedule.timezone,
            "interval_secs": schedule.interval_secs,
            "start_time": schedule.start_time,
            "end_time": schedule.end_time,
            "max_count": schedule.max_count,
            "event_name": schedule.event_name,
            "parameters": jsonb(schedule.parameters),
            "misfire_policy": schedule.misfire_policy.value,
            "misfire_grace_secs": schedule.misfire_grace_secs,
            "misfire_max_runs": schedule.misfire_max_runs,
            "start_deadline_secs": schedule.start_deadline_secs,
            "status": schedule.status.value,
            "reset_cursor": reset_cursor,
        }
        return required(await db.fetch_one(conn, _UPDATE, params), Schedule, "schedule", schedule.id)

    @staticmethod
    async def set_status(
        conn: db.Connection, schedule_id: UUID, status: ScheduleStatus, *, allowed: Sequence[ScheduleStatus]
    ) -> Schedule | None:
        """Set ``status`` if the schedule is in one of ``allowed``; else None."""
        row = await db.fetch_one(
            conn,
            _SET_STATUS,
            {"id": schedule_id, "status": status.value, "allowed": [state.value for state in allowed]},
        )
        return None if row is None else one(row, Schedule)

    @staticmethod
    async def rewind_job(conn: db.Connection, job_id: UUID) -> list[UUID]:
        """Pull the generation cursors of a job's schedules back to now; the ids moved."""
        return [row["id"] for row in await db.fetch_all(conn, _REWIND_JOB, {"job_id": job_id})]

    @staticmethod
    async def disable_job(conn: db.Connection, job_id: UUID) -> list[UUID]:
        """Disable every enabled schedule of a job; the ids changed."""
        return [row["id"] for row in await db.fetch_all(conn, _DISABLE_JOB, {"job_id": job_id})]

    @staticmethod
    async def disable_flow(conn: db.Connection, flow_id: UUID) -> list[UUID]:
        """Disable every enabled schedule of a flow; the ids changed."""
        return [row["id"] for row in await db.fetch_all(conn, _DISABLE_FLOW, {"flow_id": flow_id})]

    @staticmethod
    async def delete(conn: db.Connection, schedule_id: UUID) -> None:
        """Delete the schedule (its slot records go with it; its past tasks stay, unlinked)."""
        if await db.fetch_one(conn, _DELETE, {"id": schedule_id}) is None:
            raise NotFound("schedule", schedule_id)

    @staticmethod
    async def event_targets(conn: db.Connection, event_name: str) -> list[EventTarget]:
        """Enabled event schedules of enabled jobs listening to ``event_name``."""
        return many(await db.fetch_all(conn, _EVENT_TARGETS, {"event_name": event_name}), EventTarget)

    @staticmethod
    async def flow_event_targets(conn: db.Connection, event_name: str) -> list[FlowEventTarget]:
        """Enabled event schedules of enabled flows listening to ``event_name``."""
        rows = await db.fetch_all(conn, _FLOW_EVENT_TARGETS, {"event_name": event_name})
        return many(rows, FlowEventTarget)

    @staticmethod
    async def generatable(conn: db.Connection, *, until: datetime, limit: int) -> list[GeneratableSchedule]:
        """Enabled clock schedules of enabled jobs whose generation cursor is before ``until``."""
        rows = await db.fetch_all(conn, _GENERATABLE, {"until": until, "limit": limit})
        return [
            GeneratableSchedule(
                schedule=one({k: v for k, v in row.items() if k != "job_config"}, Schedule),
                job_config=one(row["job_config"], JobConfig),
            )
            for row in rows
        ]

    @staticmethod
    async def advance(
        conn: db.Connection,
        schedule_id: UUID,
        *,
        generated_until: datetime,
        fired: int,
        expire: bool,
        lease_name: str,
        holder: UUID,
        token: int,
    ) -> Schedule | None:
        """Move the generation cursor forward and count ``fired`` slots, fenced by the lease.

        Returns None — and changes nothing — when ``holder`` no longer holds ``lease_name`` with ``token``.
        """
        row = await db.fetch_one(
            conn,
            _ADVANCE,
            {
                "id": schedule_id,
                "generated_until": generated_until,
                "fired": fired,
                "expire": expire,
                "lease_name": lease_name,
                "holder": holder,
                "token": token,
            },
        )
        return None if row is None else one(row, Schedule)

    @staticmethod
    async def generation_work(
        conn: db.Connection,
        *,
        until: datetime,
        after_id: UUID | None,
        limit: int,
        due_until: datetime | None = None,
    ) -> list[Schedule]:
        """Up to ``limit`` enabled clock schedules, in id order after ``after_id``: of enabled jobs whose
        cursor is unset or before ``until``, and of enabled flows whose cursor is unset or before
        ``due_until`` (default ``until``)."""
        params = {
            "until": until,
            "due_until": until if due_until is None else due_until,
            "after_id": after_id,
            "limit": limit,
        }
        rows = await db.fetch_all(conn, _GENERATION_WORK, params)
        return many(rows, Schedule)

    @staticmethod
    async def misfire_settings(
        conn: db.Connection, schedule_ids: Sequence[UUID]
    ) -> dict[UUID, MisfireSettings]:
        """The misfire settings and start deadlines of the existing schedules among ``schedule_ids``."""
        if not schedule_ids:
            return {}
        rows = await db.fetch_all(conn, _MISFIRE_RULES, {"ids": sorted(set(schedule_ids))})
        return {settings.id: settings for settings in many(rows, MisfireSettings)}

    @staticmethod
    async def daemon_vacancies(conn: db.Connection, *, limit: int) -> list[DaemonVacancy]:
        """Up to ``limit`` daemon runs that should be live and have no live task, by schedule and pin."""
        return many(await db.fetch_all(conn, _DAEMON_VACANCIES, {"limit": limit}), DaemonVacancy)
