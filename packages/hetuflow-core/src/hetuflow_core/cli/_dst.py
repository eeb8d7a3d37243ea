"""Daylight saving time seen from a cron rule: when a zone's clocks jump, and which of the rule's wall-clock
times fall into the skipped or repeated span on that day.

Transitions are found from the zone database (``zoneinfo``) by comparing UTC offsets day by day and
bisecting to the second. What the server then does at those times is not decided here: ``hetuflow cron``
asks the server's preview for the fire times around each transition and words what it answers.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from hetuflow_core.cli._cronwords import CronRule

__all__ = ["Transition", "rule_times_in", "transitions"]

_DAY: Final = timedelta(days=1)
_SECOND: Final = timedelta(seconds=1)


@dataclasses.dataclass(frozen=True)
class Transition:
    """The instant a zone's UTC offset changes, and the offsets before and after."""

    instant: datetime
    before: timedelta
    after: timedelta

    @property
    def forward(self) -> bool:
        """Clocks jump forward (a span of wall-clock time is skipped) rather than back (repeated)."""
        return self.after > self.before

    @property
    def shift(self) -> timedelta:
        return abs(self.after - self.before)

    def wall_span(self) -> tuple[datetime, datetime]:
        """The wall-clock span (naive, end excluded) that is skipped, or that happens twice."""
        start = (self.instant + (self.before if self.forward else self.after)).replace(tzinfo=None)
        return start, start + self.shift


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def transitions(zone: ZoneInfo, after: datetime, days: int = 400) -> list[Transition]:
    """The zone's offset changes in the ``days`` after ``after``, in order."""
    found = []
    day = after.astimezone(UTC)
    offset = _offset(zone, day)
    for _ in range(days):
        following = day + _DAY
        next_offset = _offset(zone, following)
        if next_offset != offset:
            low, high = day, following  # offset(low) is the old one, offset(high) the new one
            while high - low > _SECOND:
                middle = low + (high - low) / 2
                if _offset(zone, middle) == offset:
                    low = middle
                else:
                    high = middle
            instant = high.replace(microsecond=0)
            if _offset(zone, instant - _SECOND) != offset:
                instant -= _SECOND
            found.append(Transition(instant, offset, next_offset))
        day, offset = following, next_offset
    return found


def rule_times_in(rule: CronRule, start: datetime, end: datetime) -> list[datetime]:
    """The wall-clock times in ``[start, end)`` (naive) that ``rule`` names, on days it runs."""
    times = []
    moment = start.replace(second=0, microsecond=0)
    while moment < end:
        if moment.minute in rule.minute and moment.hour in rule.hour and rule.matches_day(moment.date()):
            for second in rule.second.values:
                wall = moment.replace(second=second)
                if start <= wall < end:
                    times.append(wall)
        moment += timedelta(minutes=1)
    return times
