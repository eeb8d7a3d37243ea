"""Cron expressions in plain words: ``30 2 * * *`` → "at 02:30 every day".

This reads an expression only to describe it; whether it is valid, and when it fires, is the server's to say
(``hetuflow cron`` shows the server's preview beside the words). It knows the syntax the server accepts —
five fields, or six with leading seconds; ``*``, values, ranges, steps, lists, month and weekday names; the
``@`` aliases — and returns None for anything else. Day of month and day of week combine as in Vixie cron:
when both are restricted a day matches either, unless one of them starts with ``*`` (then both must match).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import date
from typing import Final

__all__ = ["CronRule", "Field", "describe", "parse"]

_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTH_NAMES: Final = ("January", "February", "March", "April", "May", "June", "July", "August",
                       "September", "October", "November", "December")  # fmt: skip
_DAY_NAMES: Final = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_ITEM: Final = re.compile(r"^(?:(?P<star>\*)|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>\d+))?$")
# A list of times is spelled out up to this many; more become "every N minutes" and the like.
_MAX_TIMES: Final = 6


@dataclasses.dataclass(frozen=True)
class Field:
    """One field: its text, the values it matches, whether it starts with ``*`` and covers everything."""

    text: str
    values: tuple[int, ...]
    star: bool
    full: bool
    step: int | None

    def __contains__(self, value: int) -> bool:
        return value in self.values


@dataclasses.dataclass(frozen=True)
class CronRule:
    """A parsed expression; ``has_seconds`` for the six-field form."""

    second: Field
    minute: Field
    hour: Field
    day: Field
    month: Field
    weekday: Field
    has_seconds: bool

    def matches_day(self, day: date) -> bool:
        """Whether the expression runs on ``day`` at all."""
        if day.month not in self.month:
            return False
        in_month, in_week = day.day in self.day, (day.isoweekday() % 7) in self.weekday
        if self.day.full or self.weekday.full:
            return in_month and in_week
        if self.day.star or self.weekday.star:
            return in_month and in_week
        return in_month or in_week

    @property
    def wildcard(self) -> bool:
        """A "wildcard job" by Debian's rule: seconds, minute or hour written starting with ``*``. Such a
        job runs by the clock on DST days; the others run once per wall-clock time."""
        return (self.has_seconds and self.second.star) or self.minute.star or self.hour.star


def _number(text: str, names: Sequence[str], offset: int) -> int:
    if text.isdigit():
        return int(text)
    return names.index(text.upper()) + offset


def _field(text: str, low: int, high: int, names: Sequence[str] = (), offset: int = 0) -> Field:
    values: set[int] = set()
    step_of_star = None
    for item in text.split(","):
        found = _ITEM.match(item)
        if found is None:
            raise ValueError(item)
        step = int(found["step"]) if found["step"] else 1
        if found["star"]:
            first, last = low, high
            step_of_star = step if step > 1 else None
        else:
            first = _number(found["a"], names, offset)
            if found["step"] and not found["b"]:
                raise ValueError(item)  # "5/15": the server wants "5-59/15"
            last = _number(found["b"], names, offset) if found["b"] else first
        if not low <= first <= last <= high or step < 1:
            raise ValueError(item)
        values.update(range(first, last + 1, step))
    full = values >= set(range(low, high + 1))
    return Field(
        text, tuple(sorted(values)), text.startswith("*"), full, step_of_star if "," not in text else None
    )


def parse(expression: str) -> CronRule | None:
    """The rule of ``expression``, or None when it is not one this module can read."""
    text = _ALIASES.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) not in (5, 6):
        return None
    has_seconds = len(parts) == 6
    if not has_seconds:
        parts.insert(0, "0")
    try:
        weekday = _field(parts[5], 0, 7, _DAYS)
        if 7 in weekday.values:  # 7 is Sunday too
            values = tuple(sorted({v % 7 for v in weekday.values}))
            weekday = dataclasses.replace(weekday, values=values, full=len(values) == 7)
        return CronRule(
            second=_field(parts[0], 0, 59),
            minute=_field(parts[1], 0, 59),
            hour=_field(parts[2], 0, 23),
            day=_field(parts[3], 1, 31),
            month=_field(parts[4], 1, 12, _MONTHS, 1),
            weekday=weekday,
            has_seconds=has_seconds,
        )
    except ValueError:
        return None


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _names(values: Sequence[int], names: Sequence[str], through: str = " to ") -> str:
    words = []
    for first, last in _runs(values):
        if last - first >= 2:
            words.append(f"{names[first]}{through}{names[last]}")
        else:
            words += [names[v] for v in range(first, last + 1)]
    return _join(words)


def _numbers(values: Sequence[int]) -> str:
    return _names(values, [str(v) for v in range(61)], "-")


def _time(rule: CronRule) -> str:
    second, minute, hour = rule.second, rule.minute, rule.hour
    seconds = second.values if rule.has_seconds else (0,)
    if not (minute.full or hour.full) and len(seconds) * len(minute.values) * len(hour.values) <= _MAX_TIMES:
        times = [
            f"{h:02}:{m:02}" + (f":{s:02}" if rule.has_seconds and seconds != (0,) else "")
            for h in hour.values
            for m in minute.values
            for s in seconds
        ]
        return "at " + _join(times)
    parts = []
    if rule.has_seconds and seconds != (0,):
        if second.full:
            parts.append("every second")
        elif second.step:
            parts.append(f"every {second.step} seconds")
        else:
            parts.append(f"at second {_numbers(seconds)}")
    if minute.full:
        if not parts:
            parts.append("every minute")
        elif not (second.full or second.step):
            parts.append("of every minute")
    elif minute.step:
        parts.append(f"every {minute.step} minutes")
    if hour.full or hour.step:
        every = "every hour" if hour.full else f"every {hour.step} hours"
        if minute.full or minute.step:
            return " ".join(parts) if hour.full else " ".join([*parts, f"of {every}"])
        return " ".join([*parts, every, f"at minute {_minutes(minute.values)}"])
    hours = _runs(hour.values)
    if not (minute.full or minute.step):
        if len(minute.values) == 1 and len(hours) == 1:
            first, last, at = hour.values[0], hour.values[-1], minute.values[0]
            return " ".join([*parts, f"every hour from {first:02}:{at:02} to {last:02}:{at:02}"])
        parts.append(f"at minute {_minutes(minute.values)}")
    if len(hours) == 1:
        parts.append(f"from {hour.values[0]:02}:00 to {hour.values[-1]:02}:59")
    else:
        parts.append(f"in hours {_numbers(hour.values)}")
    return " ".join(parts)


def _minutes(values: Sequence[int]) -> str:
    return _join([f"{v:02}" for v in values])


def _weekdays(values: Sequence[int]) -> str:
    """Weekday names, Monday first (cron counts from Sunday = 0)."""
    monday_first = sorted((v - 1) % 7 for v in values)
    return _names(monday_first, _DAY_NAMES[1:] + _DAY_NAMES[:1])


def _days(rule: CronRule) -> str:
    day, weekday, month = rule.day, rule.weekday, rule.month
    months = [m - 1 for m in month.values]
    if month.full:
        in_month = ""
    elif len(_runs(months)) == 1 and len(months) > 2:
        in_month = f" from {_MONTH_NAMES[months[0]]} to {_MONTH_NAMES[months[-1]]}"
    else:
        in_month = f" in {_names(months, _MONTH_NAMES)}"
    if len(month.values) == 1 and len(day.values) == 1 and weekday.full:
        return f"on {day.values[0]} {_MONTH_NAMES[month.values[0] - 1]}"
    week = f"on {_weekdays(weekday.values)}"
    if day.step:
        days = f"on every {_ordinal(day.step)} day of the month"
    else:
        days = f"on day{'s' if len(day.values) > 1 else ''} {_numbers(day.values)} of the month"
    if day.full and weekday.full:
        return "every day" + in_month
    if day.full:
        return week + in_month
    if weekday.full:
        return days + in_month
    if day.star or weekday.star:
        return f"{days} when it is a {_weekdays(weekday.values).replace(' and ', ' or ')}{in_month}"
    return f"{days} and {week}{in_month}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe(rule: CronRule, timezone: str) -> str:
    """The rule in words, with its zone: "at 02:30 every day, Europe/Berlin"."""
    time, days = _time(rule), _days(rule)
    if days == "every day" and "every " in time:  # "every 5 minutes every day" says it twice
        return f"{time}, {timezone}"
    return f"{time} {days}, {timezone}"
