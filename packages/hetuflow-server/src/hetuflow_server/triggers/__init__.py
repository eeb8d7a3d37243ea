"""Pure schedule math: when a schedule's slots fire, and which of them may start.

Everything here is a function of a schedule's fields and an instant: no database, no clock, no IO, so the
services (validation, preview) and the scheduler's loops (generation) share it. ``build_trigger`` and
``fire_times`` are the fire-time computation (cron, interval and once; Vixie cron syntax with Debian cron's
daylight-saving rules, see docs/scheduling.md); ``upcoming`` gives a stored schedule's next fire times,
``misfire`` and ``overlap`` are the policy decisions about late and overlapping slots.
"""

from __future__ import annotations

from hetuflow_server.triggers._build import build_trigger
from hetuflow_server.triggers._cron import SEARCH_YEARS, CronExpression, parse_cron
from hetuflow_server.triggers._cron_trigger import CronTrigger
from hetuflow_server.triggers._errors import InvalidSchedule
from hetuflow_server.triggers._timezone import load_timezone
from hetuflow_server.triggers._trigger import (
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
