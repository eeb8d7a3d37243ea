"""Schedules: when a job runs, and the record of every slot that came due."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from hetuflow_core.enums import MisfirePolicy, ScheduleKind, ScheduleStatus, SlotOutcome
from hetuflow_core.types import INT32_MAX, Name, Parameters

__all__ = [
    "Schedule",
    "ScheduleCreate",
    "SchedulePreview",
    "SchedulePreviewRequest",
    "ScheduleSlot",
    "ScheduleUpdate",
]

CronExpression = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        description="5 fields (minute hour day month weekday) or 6 with leading seconds, or an @alias",
        examples=["*/5 * * * *", "0 30 2 * * MON-FRI", "@hourly"],
    ),
]
TimeZoneName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, description="IANA time zone", examples=["Europe/London"])
]
IntervalSecs = Annotated[int, msgspec.Meta(ge=1, le=31_536_000)]
MaxCount = Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)]
GraceSecs = Annotated[float, msgspec.Meta(ge=0, le=604_800)]
MisfireMaxRuns = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
StartDeadlineSecs = Annotated[
    float,
    msgspec.Meta(
        ge=0,
        le=604_800,
        description="a slot that cannot start within this many seconds of its time is recorded missed, "
        "even when it only waits for a free agent; none: a slot planned in time waits as long as it takes",
    ),
]


class Schedule(msgspec.Struct, kw_only=True):
    """A stored schedule as the API returns it."""

    id: UUID
    job_id: UUID | None
    """The job it runs, or none when it runs a flow."""
    flow_id: UUID | None = None
    """The flow it starts a run of at every fire, or none when it runs a job."""
    kind: ScheduleKind
    cron_expression: str | None
    timezone: str
    interval_secs: int | None
    start_time: datetime | None
    end_time: datetime | None
    max_count: int | None
    event_name: str | None
    parameters: Parameters
    misfire_policy: MisfirePolicy
    misfire_grace_secs: float
    misfire_max_runs: int
    start_deadline_secs: float | None
    status: ScheduleStatus
    generated_until: datetime | None
    fire_count: int
    created_at: datetime
    updated_at: datetime


class ScheduleCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/schedules``. Which fields are required depends on ``kind``:
    ``cron`` needs ``cron_expression``, ``interval`` needs ``interval_secs``, ``once`` needs
    ``start_time`` (the instant it fires), ``event`` needs ``event_name``. A schedule targets either a job
    (``job_id``) or a flow (``flow_id``: every fire starts one flow run; ``daemon`` is for jobs only). A
    slot whose task was planned in time waits for a free agent as long as it takes (or until
    ``start_deadline_secs``); slots the scheduler could not plan or watch in time (an outage, a pause) follow
    ``misfire_policy`` beyond ``misfire_grace_secs``."""

    job_id: UUID | None = None
    flow_id: UUID | None = None
    kind: ScheduleKind
    cron_expression: CronExpression | None = None
    timezone: TimeZoneName = "UTC"
    interval_secs: IntervalSecs | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_count: MaxCount | None = None
    event_name: Name | None = None
    parameters: Parameters = {}
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    misfire_grace_secs: GraceSecs = 60.0
    misfire_max_runs: MisfireMaxRuns = 100
    start_deadline_secs: StartDeadlineSecs | None = None
    status: ScheduleStatus = ScheduleStatus.ENABLED


class ScheduleUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PATCH /api/v1/schedules/{id}``: only the fields given change."""

    cron_expression: CronExpression | msgspec.UnsetType | None = msgspec.UNSET
    timezone: TimeZoneName | msgspec.UnsetType = msgspec.UNSET
    interval_secs: IntervalSecs | msgspec.UnsetType | None = msgspec.UNSET
    start_time: datetime | msgspec.UnsetType | None = msgspec.UNSET
    end_time: datetime | msgspec.UnsetType | None = msgspec.UNSET
    max_count: MaxCount | msgspec.UnsetType | None = msgspec.UNSET
    event_name: Name | msgspec.UnsetType | None = msgspec.UNSET
    parameters: Parameters | msgspec.UnsetType = msgspec.UNSET
    misfire_policy: MisfirePolicy | msgspec.UnsetType = msgspec.UNSET
    misfire_grace_secs: GraceSecs | msgspec.UnsetType = msgspec.UNSET
    misfire_max_runs: MisfireMaxRuns | msgspec.UnsetType = msgspec.UNSET
    start_deadline_secs: StartDeadlineSecs | msgspec.UnsetType | None = msgspec.UNSET
    status: ScheduleStatus | msgspec.UnsetType = msgspec.UNSET


class SchedulePreviewRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}
):
    """Body of ``POST /api/v1/schedules/preview``: schedule fields plus where to start and how many."""

    kind: ScheduleKind
    cron_expression: CronExpression | None = None
    timezone: TimeZoneName = "UTC"
    interval_secs: IntervalSecs | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_count: MaxCount | None = None
    from_: datetime | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


class SchedulePreview(msgspec.Struct, kw_only=True):
    """Next fire times as RFC 3339 strings in the schedule's time zone, with their UTC offsets."""

    fire_times: list[str]


class ScheduleSlot(msgspec.Struct, kw_only=True):
    """One due slot of a schedule and what became of it."""

    schedule_id: UUID
    scheduled_at: datetime
    outcome: SlotOutcome
    task_id: UUID | None
    detail: str | None
    recorded_at: datetime
    flow_run_id: UUID | None = None
    """The flow run a flow schedule's slot started (outcome ``ran``)."""
