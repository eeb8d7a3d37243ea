"""Cron expressions: Vixie cron syntax parsed into sorted value sets, and matching on wall-clock time.

A ``CronExpression`` knows nothing of time zones: it answers "does this wall-clock time match" and "which is
the first matching wall-clock time at or after this one". Turning wall-clock times into instants, with the
daylight-saving rules of Debian cron, is ``CronTrigger``'s job. The search for the next match walks months
and days through bit masks, never second by second, so a year-long gap costs a dozen steps.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from hetuflow_server.triggers._errors import InvalidSchedule

__all__ = ["SEARCH_YEARS", "CronExpression", "parse_cron"]

# The Gregorian calendar repeats every 400 years, so an expression with no match in 400 years never matches.
SEARCH_YEARS = 400
# Wall-clock times are kept a day away from datetime's limits so that offsetting them never overflows.
_LAST_YEAR = 9998
_SECOND = timedelta(seconds=1)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_WEEKDAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_QUARTZ = ("?", "L", "W", "#")


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_SECOND_SPEC = _Spec("second", 0, 59)
_FIVE_SPECS = (
    _Spec("minute", 0, 59),
    _Spec("hour", 0, 23),
    _Spec("day-of-month", 1, 31),
    _Spec("month", 1, 12, _MONTHS),
    _Spec("day-of-week", 0, 7, _WEEKDAYS),
)


def _fail(reason: str) -> InvalidSchedule:
    return InvalidSchedule("cron_expression", reason)


def _value(token: str, spec: _Spec) -> int:
    if token.isascii() and token.isdigit():
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise _fail(f"field '{spec.name}' value {number} out of range {spec.low}-{spec.high}")
        return number
    if spec.names is not None and token.upper() in spec.names:
        return spec.names[token.upper()]
    if any(mark in token.upper() for mark in _QUARTZ):
        raise _fail(
            f"field '{spec.name}' value {token!r} is not supported "
            "(the Quartz extensions ?, L, W and # are not part of cron syntax)"
        )
    if spec.names is not None:
        examples = ", ".join(list(spec.names)[:3])
        raise _fail(f"field '{spec.name}' value {token!r} is neither a number nor a name like {examples}")
    raise _fail(f"field '{spec.name}' value {token!r} is not a number")


def _parse_field(text: str, spec: _Spec) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _fail(f"field '{spec.name}' has an empty list item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise _fail(f"field '{spec.name}' step {step_text!r} in {item!r} is not a positive number")
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, spec), _value(last, spec)
            if low > high:
                raise _fail(f"field '{spec.name}' range {base!r} runs backwards (cron ranges do not wrap)")
        else:
            low = high = _value(base, spec)
            if slash:
                raise _fail(
                    f"field '{spec.name}' step in {item!r} needs a range or '*' "
                    f"(write '{base}-{spec.high}/{step_text}')"
                )
        values.update(range(low, high + 1, step))
    return values


def _low_bit(mask: int) -> int:
    """Index of the lowest set bit of a non-zero mask."""
    return (mask & -mask).bit_length() - 1


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed cron expression; build it with ``parse_cron``.

    ``weekdays`` count from Sunday = 0 (7 is folded into 0). ``day_or`` is true when both day fields are
    restricted, so that a day matches if either matches (Vixie cron). ``wildcard`` is Debian cron's
    "wildcard job": the seconds, minute or hour field starts with ``*``; only other jobs ("fixed-time")
    get the daylight-saving adjustments.
    """

    source: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    day_or: bool
    wildcard: bool
    _dom_mask: int = field(init=False, repr=False, compare=False)
    _dow_masks: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _month_ok: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    _month_cache: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        dom_mask = sum(1 << day for day in self.days)
        # Bits 1..31 of the days whose weekday matches, for a month whose 1st falls on weekday ``first``.
        dow_masks = tuple(
            sum(1 << day for day in range(1, 32) if (first + day - 1) % 7 in self.weekdays)
            for first in range(7)
        )
        object.__setattr__(self, "_dom_mask", dom_mask)
        object.__setattr__(self, "_dow_masks", dow_masks)
        object.__setattr__(self, "_month_ok", tuple(month in self.months for month in range(13)))
        object.__setattr__(self, "_month_cache", {})

    def __str__(self) -> str:
        return self.source

    def day_mask(self, year: int, month: int) -> int:
        """Bit ``d`` is set when day ``d`` of the month matches the day-of-month and day-of-week fields."""
        key = year * 16 + month
        mask = self._month_cache.get(key)
        if mask is None:
            first = (date(year, month, 1).weekday() + 1) % 7
            length = calendar.monthrange(year, month)[1]
            dow = self._dow_masks[first]
            mask = (self._dom_mask | dow) if self.day_or else (self._dom_mask & dow)
            mask &= (1 << (length + 1)) - 2
            if len(self._month_cache) >= 1024:
                self._month_cache.clear()
            self._month_cache[key] = mask
        return mask

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock time (whole second; tzinfo ignored) matches every field."""
        return (
            self._month_ok[wall.month]
            and bool(self.day_mask(wall.year, wall.month) >> wall.day & 1)
            and wall.hour in self.hours
            and wall.minute in self.minutes
            and wall.second in self.seconds
        )

    def _time_at_or_after(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_left(hours, hour)
        if i == len(hours):
            return None
        if hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes) and minutes[j] == minute:
                k = bisect_left(seconds, second)
                if k < len(seconds):
                    return hour, minute, seconds[k]
                j += 1
            if j < len(minutes):
                return hour, minutes[j], seconds[0]
            i += 1
            if i == len(hours):
                return None
        return hours[i], minutes[0], seconds[0]

    def next_match(self, wall: datetime) -> datetime | None:
        """The first matching wall-clock time at or after naive ``wall``; None if none in ``SEARCH_YEARS``."""
        if wall.microsecond:
            wall = wall.replace(microsecond=0) + _SECOND
        year, month, day = wall.year, wall.month, wall.day
        start_of_day = (self.hours[0], self.minutes[0], self.seconds[0])
        if self._month_ok[month]:
            mask = self.day_mask(year, month)
            if mask >> day & 1:
                time = self._time_at_or_after(wall.hour, wall.minute, wall.second)
                if time is not None:
                    return datetime(year, month, day, *time)
            later = mask >> (day + 1)
            if later:
                return datetime(year, month, day + 1 + _low_bit(later), *start_of_day)
        months = self.months[bisect_right(self.months, month) :]
        for candidate_year in range(year, min(year + SEARCH_YEARS, _LAST_YEAR) + 1):
            for candidate_month in months:
                mask = self.day_mask(candidate_year, candidate_month)
                if mask:
                    return datetime(candidate_year, candidate_month, _low_bit(mask), *start_of_day)
            months = self.months
        return None


def parse_cron(expression: str) -> CronExpression:
    """Parse 5 fields (minute hour day-of-month month day-of-week), 6 (leading seconds) or an ``@alias``.

    Raises ``InvalidSchedule`` with ``field == "cron_expression"`` and a reason naming the bad field.
    """
    if not isinstance(expression, str):
        raise _fail(f"must be a string, not {type(expression).__name__}")
    text = expression.strip()
    if text.startswith("@"):
        expanded = _ALIASES.get(text.lower())
        if expanded is None:
            raise _fail(f"unknown alias {text!r}; expected one of {', '.join(_ALIASES)}")
        text = expanded
    parts = text.split()
    if len(parts) not in (5, 6):
        raise _fail(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with leading seconds), "
            f"got {len(parts)}"
        )
    if len(parts) == 5:
        parts.insert(0, "0")
        wildcard_fields = parts[1:3]
    else:
        wildcard_fields = parts[0:3]
    specs = (_SECOND_SPEC, *_FIVE_SPECS)
    seconds, minutes, hours, days, months, weekdays = (
        _parse_field(part, spec) for part, spec in zip(parts, specs, strict=True)
    )
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    return CronExpression(
        source=expression.strip(),
        seconds=tuple(sorted(seconds)),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=tuple(sorted(days)),
        months=tuple(sorted(months)),
        weekdays=tuple(sorted(weekdays)),
        # Vixie cron: a field that starts with '*' (also '*/2') counts as unrestricted for this rule.
        day_or=not parts[3].startswith("*") and not parts[5].startswith("*"),
        wildcard=any(part.startswith("*") for part in wildcard_fields),
    )
