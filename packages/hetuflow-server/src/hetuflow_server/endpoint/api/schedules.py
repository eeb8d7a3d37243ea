"""``/api/v1/schedules``: schedules of jobs, their fire-slot record, and previews of their fire times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Protocol
from uuid import UUID

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.enums import ScheduleKind, TokenScope
from hetuflow_core.schedule import (
    Schedule,
    ScheduleCreate,
    SchedulePreview,
    SchedulePreviewRequest,
    ScheduleSlot,
    ScheduleUpdate,
)
from hetuflow_server import errors, triggers
from hetuflow_server.endpoint.api.operation import API_PREFIX, Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery

__all__ = ["FireRule", "operations", "preview_fire_times"]

operations = Operations("schedules", "When jobs and flows run, and what became of every due slot")


def _location(schedule: Schedule) -> str:
    return f"{API_PREFIX}/schedules/{schedule.id}"


class ScheduleListQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/schedules``."""

    job_id: UUID | None = None
    flow_id: UUID | None = None


class NextQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/schedules/{id}/next``."""

    count: Annotated[int, msgspec.Meta(ge=1, le=1000, description="How many fire times")] = 10


class FireRule(Protocol):
    """What decides when a schedule fires; a stored ``Schedule`` and a preview request both have it."""

    @property
    def kind(self) -> ScheduleKind: ...
    @property
    def cron_expression(self) -> str | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def interval_secs(self) -> int | None: ...
    @property
    def start_time(self) -> datetime | None: ...
    @property
    def end_time(self) -> datetime | None: ...
    @property
    def max_count(self) -> int | None: ...


def preview_fire_times(rule: FireRule, *, after: datetime, count: int, fired: int = 0) -> list[str] | None:
    """The next ``count`` fire times of ``rule`` strictly after ``after``, as RFC 3339 strings in its zone.

    None for the kinds that have no fire times of their own (event, daemon, flow). Raises ``InvalidSchedule``
    (422) naming the field when the schedule cannot be built. ``fired`` counts fires already spent against
    ``max_count``.
    """
    trigger = triggers.build_trigger(
        rule.kind,
        cron_expression=rule.cron_expression,
        timezone=rule.timezone,
        interval_secs=rule.interval_secs,
        start_time=rule.start_time,
        end_time=rule.end_time,
        max_count=rule.max_count,
    )
    if trigger is None:
        return None
    zone = triggers.load_timezone(rule.timezone)
    return [
        fire.astimezone(zone).isoformat()
        for fire in triggers.fire_times(trigger, after, count=count, fired=fired)
    ]


@operations.get("/schedules", summary="List schedules")
async def list_schedules(ctx: Context, query: ScheduleListQuery) -> Page[Schedule]:
    """Schedules in creation order, optionally of one job or one flow."""
    return await ctx.services.schedules.list(
        job_id=query.job_id, flow_id=query.flow_id, cursor=query.cursor, limit=query.limit
    )


@operations.post("/schedules", summary="Create a schedule", status=201, location=_location)
async def create_schedule(ctx: Context, body: ScheduleCreate) -> Schedule:
    """Store a schedule of a job (``job_id``) or of a flow (``flow_id``: each fire starts one flow run).
    Which fields are needed depends on ``kind``; a bad cron expression, an unknown time zone or a job or flow
    that does not exist is a 422 naming the field."""
    return await ctx.services.schedules.create(body)


@operations.post(
    "/schedules/preview",
    summary="Preview fire times",
    scope=TokenScope.READ,
    audit=False,  # changes nothing
)
async def preview_schedule(ctx: Context, body: SchedulePreviewRequest) -> SchedulePreview:
    """The next ``count`` fire times of a schedule that is not stored, strictly after ``from`` (default: now),
    as RFC 3339 strings in the schedule's time zone with their UTC offsets. Nothing is stored."""
    after = datetime.now(UTC) if body.from_ is None else body.from_
    if after.tzinfo is None or after.utcoffset() is None:
        message = "needs a UTC offset (naive date-times are ambiguous)"
        raise errors.InvalidInput(f"$.from: {message}", [errors.FieldProblem("$.from", message)])
    fire_times = preview_fire_times(body, after=after, count=body.count)
    if fire_times is None:
        message = f"{body.kind} schedules have no fire times of their own"
        raise errors.InvalidInput(f"$.kind: {message}", [errors.FieldProblem("$.kind", message)])
    return SchedulePreview(fire_times=fire_times)


@operations.get("/schedules/{schedule_id}", summary="Get a schedule")
async def get_schedule(ctx: Context, schedule_id: UUID) -> Schedule:
    """One schedule by id."""
    return await ctx.services.schedules.get(schedule_id)


@operations.patch("/schedules/{schedule_id}", summary="Change a schedule")
async def update_schedule(ctx: Context, schedule_id: UUID, body: ScheduleUpdate) -> Schedule:
    """Change the fields given; the result must still be a valid schedule of its kind. Changing when it
    fires replans its future tasks."""
    return await ctx.services.schedules.update(schedule_id, body)


@operations.delete("/schedules/{schedule_id}", summary="Delete a schedule")
async def delete_schedule(ctx: Context, schedule_id: UUID) -> None:
    """Delete the schedule and its never-started tasks; tasks that already ran stay."""
    await ctx.services.schedules.delete(schedule_id)


@operations.post("/schedules/{schedule_id}/enable", summary="Enable a schedule")
async def enable_schedule(ctx: Context, schedule_id: UUID) -> Schedule:
    """A disabled or expired schedule fires again (no change when enabled)."""
    return await ctx.services.schedules.enable(schedule_id)


@operations.post("/schedules/{schedule_id}/disable", summary="Disable a schedule")
async def disable_schedule(ctx: Context, schedule_id: UUID) -> Schedule:
    """Pause the schedule and remove its not yet dispatched future tasks."""
    return await ctx.services.schedules.disable(schedule_id)


@operations.get("/schedules/{schedule_id}/next", summary="Next fire times of a schedule")
async def next_fire_times(ctx: Context, schedule_id: UUID, query: NextQuery) -> SchedulePreview:
    """The next ``count`` fire times of a stored schedule after now, in its time zone with UTC offsets.

    A schedule that is not enabled does not fire, nor do event, daemon and flow schedules on their own:
    their list is empty. Slots the generator already planned count toward ``max_count`` once, so a schedule
    whose remaining runs are all planned still lists them.
    """
    schedule, fires = await ctx.services.schedules.next_fire_times(schedule_id, count=query.count)
    if not fires:
        return SchedulePreview(fire_times=[])
    zone = triggers.load_timezone(schedule.timezone)
    return SchedulePreview(fire_times=[fire.astimezone(zone).isoformat() for fire in fires])


@operations.get("/schedules/{schedule_id}/slots", summary="Fire-slot record of a schedule")
async def list_schedule_slots(ctx: Context, schedule_id: UUID, query: PageQuery) -> Page[ScheduleSlot]:
    """Every due slot of the schedule, latest first, with what became of it: ``ran`` (with its task),
    ``skipped_overlap``, ``missed`` (misfire policy) or ``deduplicated``."""
    return await ctx.services.schedules.list_slots(schedule_id, cursor=query.cursor, limit=query.limit)
