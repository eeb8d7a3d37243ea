"""A stored schedule's trigger and its upcoming fire times, counted the way the generator counts them.

``fire_count`` counts every slot the generator has planned or recorded, up to its cursor
``generated_until`` — and the cursor runs up to a horizon ahead of the clock. So "the next N fire times after
now" of a schedule with ``max_count`` is: the slots already planned after now (up to the cursor; they are
counted already), then the trigger's slots after the cursor with what ``max_count`` leaves. When the cursor is
behind ``after`` (the leader was down), the slots between the cursor and ``after`` still use up ``max_count``
first. Pure: no clock, no database.
"""

from __future__ import annotations

from datetime import datetime
from itertools import islice

from hetuflow_core.enums import ScheduleStatus
from hetuflow_core.schedule import Schedule, ScheduleCreate
from hetuflow_server.triggers._build import build_trigger
from hetuflow_server.triggers._trigger import Trigger, fire_times

__all__ = ["schedule_trigger", "upcoming_fire_times"]


def schedule_trigger(schedule: Schedule | ScheduleCreate) -> Trigger | None:
    """The trigger of a schedule, built exactly as the preview API builds it (same interval anchor); None for
    the kinds without a clock rule. InvalidSchedule names the field that makes no trigger."""
    return build_trigger(
        schedule.kind.value,
        cron_expression=schedule.cron_expression,
        timezone=schedule.timezone,
        interval_secs=schedule.interval_secs,
        start_time=schedule.start_time,
        end_time=schedule.end_time,
        max_count=schedule.max_count,
    )


def upcoming_fire_times(schedule: Schedule, *, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times of ``schedule`` strictly after ``after``, in UTC.

    Empty for a schedule that is not enabled or has no clock rule. Raises ``InvalidSchedule`` if the stored
    fields no longer make a trigger (e.g. a time zone removed from the system's database).
    """
    if count <= 0 or schedule.status is not ScheduleStatus.ENABLED:
        return []
    trigger = schedule_trigger(schedule)
    if trigger is None:
        return []
    cursor = schedule.generated_until
    if cursor is None:
        return list(fire_times(trigger, after, count=count, fired=schedule.fire_count))
    if cursor > after:
        planned = list(fire_times(trigger, after, cursor, count=count))
        rest = fire_times(trigger, cursor, count=count - len(planned), fired=schedule.fire_count)
        return planned + list(rest)
    if trigger.max_count is None:
        return list(fire_times(trigger, after, count=count))
    # Slots between the cursor and `after` come first and use up max_count (at most max_count of them).
    later = (fire for fire in fire_times(trigger, cursor, fired=schedule.fire_count) if fire > after)
    return list(islice(later, count))
