"""Fire-time computation for schedules: cron, interval and once triggers, pure and exact.

Everything exported here is a pure function of a schedule's fields and an instant: no database, no clock, no
IO. The task generator and the preview API call ``build_trigger`` and iterate ``fire_times``. Cron expressions
follow Vixie cron syntax and Debian cron's daylight-saving rules; docs/scheduling.md describes both.

What turns fire times into tasks lives in modules of their own, imported as modules: ``leader`` (the leader
lease), ``generator`` (task generation on the leader), ``misfire`` and ``overlap`` (the pure policy
decisions), ``admission`` (the dispatcher's check of due slots) and ``upcoming`` (next fire times of a stored
schedule).
"""

from __future__ import annotations

from hetuflow_server.scheduler._build import build_trigger
from hetuflow_server.scheduler._cron import SEARCH_YEARS, CronExpression, parse_cron
from hetuflow_server.scheduler._cron_trigger import CronTrigger
from hetuflow_server.scheduler._errors import InvalidSchedule
from hetuflow_server.scheduler._timezone import load_timezone
from hetuflow_server.scheduler._trigger import (
    MAX_INTERVAL_SECS,
    IntervalTrigger,
    OnceTrigger,
    Trigger,
    fire_times,
)

__all__ = [
    "MAX_INTERVAL_SECS",
    "SEARCH_YEARS",
    "CronExpression",
    "CronTrigger",
    "IntervalTrigger",
    "InvalidSchedule",
    "OnceTrigger",
    "Trigger",
    "build_trigger",
    "fire_times",
    "load_timezone",
    "parse_cron",
]
