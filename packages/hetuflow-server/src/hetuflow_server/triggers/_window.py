"""The window every trigger shares: ``start_time`` and ``end_time`` (both inclusive) and ``max_count``.

Instants cross the scheduler's API as aware datetimes and leave it in UTC; naive datetimes are refused, since
a naive "02:30" means a different instant on every server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hetuflow_server.triggers._errors import InvalidSchedule

__all__ = ["EARLIEST", "LATEST", "as_utc", "aware_utc", "check_max_count", "check_window", "clamp_after"]

# Fire times are produced between these bounds; outside them datetime arithmetic with offsets may overflow.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def aware_utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC; ``InvalidSchedule`` on ``field`` if it is not an aware datetime."""
    if not isinstance(value, datetime):
        raise InvalidSchedule(field, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSchedule(field, "must be timezone-aware (naive datetimes are ambiguous)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 at a positive offset, or 9999 at a negative one
        raise InvalidSchedule(field, "is a date or time outside years 1 to 9999 in UTC") from None


def check_window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """Both bounds in UTC, refusing naive values and an end before the start."""
    start_utc = None if start is None else aware_utc(start, "start_time")
    end_utc = None if end is None else aware_utc(end, "end_time")
    if start_utc is not None and end_utc is not None and end_utc < start_utc:
        raise InvalidSchedule(
            "end_time", f"{end_utc.isoformat()} is before start_time {start_utc.isoformat()}"
        )
    return start_utc, end_utc


def check_max_count(max_count: int | None) -> int | None:
    """``max_count`` if it is None or a positive integer."""
    if max_count is None:
        return None
    if isinstance(max_count, bool) or not isinstance(max_count, int):
        raise InvalidSchedule("max_count", f"must be an integer, not {type(max_count).__name__}")
    if max_count < 1:
        raise InvalidSchedule("max_count", f"must be at least 1, got {max_count}")
    return max_count


def as_utc(value: datetime, name: str) -> datetime:
    """An argument (not a schedule field) in UTC; ``ValueError`` if it is not an aware datetime."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def clamp_after(after: datetime, start: datetime | None) -> datetime:
    """``after`` in UTC, moved to just before ``start`` (and ``EARLIEST``) so the first fire can equal it."""
    after = as_utc(after, "after")
    floor = EARLIEST if start is None else max(start, EARLIEST)
    return max(after, floor - _MICROSECOND)
