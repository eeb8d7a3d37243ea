"""IANA time zones for schedules: loading a zone by name, and finding the instants where its offset changes.

``zoneinfo`` answers "what is the UTC offset at this instant" but does not list a zone's transitions, which
the cron trigger needs to tell where a stretch of steady wall-clock time ends. ``first_offset_change`` finds
one by binary search between two instants whose offsets differ; ``next_offset_change`` probes forward in
``PROBE_STEP`` strides. The probes are exact as long as no zone changes its offset twice within one stride:
the tzdata database has no such pair since 1900 (the closest, Africa/Freetown in 1939, are 95 hours apart).
"""

from __future__ import annotations

import difflib
import functools
import zoneinfo
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hetuflow_server.triggers._errors import InvalidSchedule

__all__ = ["PROBE_STEP", "first_offset_change", "load_timezone", "next_offset_change", "offset_at"]

PROBE_STEP = timedelta(hours=6)
_SECOND = timedelta(seconds=1)
# Names that zoneinfo can open but that are not one fixed IANA zone: the host's own zone (servers would
# disagree) and the copies with leap seconds or POSIX rules.
_REFUSED_PREFIXES = ("posix/", "right/")
_REFUSED_NAMES = frozenset({"localtime", "posixrules"})


@functools.cache
def _known_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _unknown(name: str) -> InvalidSchedule:
    reason = f"unknown IANA time zone {name!r}"
    close = difflib.get_close_matches(name, _known_names(), n=1, cutoff=0.8)
    if not close:
        lowered = {known.lower(): known for known in _known_names()}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    if close:
        reason += f"; did you mean {close[0]!r}?"
    return InvalidSchedule("timezone", reason)


def load_timezone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``"Europe/London"``); ``InvalidSchedule`` on ``timezone`` if unknown."""
    if not isinstance(name, str):
        raise InvalidSchedule("timezone", f"must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidSchedule("timezone", "must not be empty")
    if name in _REFUSED_NAMES or name.startswith(_REFUSED_PREFIXES):
        raise InvalidSchedule("timezone", f"{name!r} is not an IANA zone name (use e.g. 'Europe/London')")
    try:
        return ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: malformed keys (absolute or '..' paths) and files that are not TZif data.
        raise _unknown(name) from None


def _at(epoch: int, zone: ZoneInfo) -> timedelta:
    offset = datetime.fromtimestamp(epoch, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset
    return offset


def offset_at(instant: datetime, zone: ZoneInfo) -> timedelta:
    """UTC offset of ``zone`` at an aware instant."""
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def first_offset_change(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second in ``(low, high]`` whose offset differs from the offset at ``low``.

    ``low`` and ``high`` are aware instants on whole seconds whose offsets differ, with at most one transition
    between them. Transitions in tzdata fall on whole seconds.
    """
    lo = int(low.timestamp())
    hi = int(high.timestamp())
    before = _at(lo, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _at(mid, zone) == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def next_offset_change(after: datetime, until: datetime, zone: ZoneInfo) -> datetime | None:
    """The first instant in ``(after, until]`` where the offset differs from the one at ``after``, if any."""
    offset = offset_at(after, zone)
    low = after
    while low < until:
        high = min(low + PROBE_STEP, until)
        if offset_at(high, zone) != offset:
            return first_offset_change(low, high, zone)
        low = high
    return None
