"""From a schedule's stored fields to its trigger, validating every field on the way.

The API calls ``build_trigger`` to refuse a bad schedule before it is stored, the preview endpoint to list its
next fire times, and the task generator to materialise slots. Event, daemon and flow schedules have no clock
rule: their fields are still checked, and the answer is None.
"""

from __future__ import annotations

from datetime import datetime

from hetuflow_core.enums import ScheduleKind
from hetuflow_server.triggers._cron_trigger import CronTrigger
from hetuflow_server.triggers._errors import InvalidSchedule
from hetuflow_server.triggers._timezone import load_timezone
from hetuflow_server.triggers._trigger import IntervalTrigger, OnceTrigger, Trigger
from hetuflow_server.triggers._window import check_max_count, check_window

__all__ = ["build_trigger"]

_KINDS = tuple(kind.value for kind in ScheduleKind)


def build_trigger(
    kind: str,
    *,
    cron_expression: str | None = None,
    timezone: str = "UTC",
    interval_secs: int | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    max_count: int | None = None,
    anchor: datetime | None = None,
) -> Trigger | None:
    """The trigger of a schedule, or None for the kinds without one (event, daemon, flow).

    ``cron`` needs ``cron_expression`` (read in ``timezone``); ``interval`` needs ``interval_secs`` and counts
    from ``anchor``, else ``start_time``, else the Unix epoch; ``once`` fires at ``start_time``. A field that
    the kind does not use must be None. Raises ``InvalidSchedule`` naming the first bad field.
    """
    if kind not in _KINDS:
        raise InvalidSchedule("kind", f"unknown kind {kind!r}; expected one of {', '.join(_KINDS)}")
    zone = load_timezone(timezone)
    start, end = check_window(start_time, end_time)
    max_count = check_max_count(max_count)
    if kind != ScheduleKind.CRON and cron_expression is not None:
        raise InvalidSchedule("cron_expression", f"only cron schedules take one, this one is {kind}")
    if kind != ScheduleKind.INTERVAL and interval_secs is not None:
        raise InvalidSchedule("interval_secs", f"only interval schedules take one, this one is {kind}")

    if kind == ScheduleKind.CRON:
        if cron_expression is None:
            raise InvalidSchedule("cron_expression", "required for cron schedules")
        return CronTrigger(cron_expression, zone, start, end, max_count=max_count)
    if kind == ScheduleKind.INTERVAL:
        if interval_secs is None:
            raise InvalidSchedule("interval_secs", "required for interval schedules")
        return IntervalTrigger(interval_secs, anchor, start, end, max_count=max_count)
    if kind == ScheduleKind.ONCE:
        if start is None:
            raise InvalidSchedule("start_time", "required for once schedules (it is the instant they fire)")
        return OnceTrigger(start)
    return None
