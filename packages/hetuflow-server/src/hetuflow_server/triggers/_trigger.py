"""The trigger protocol, the iterator over fire times, and the two simple triggers (interval and once).

A trigger is a pure rule: given an instant it names the next instant strictly after it at which the schedule
fires, in UTC, or None when it never fires again. It keeps no state, so the task generator, the preview API
and every server compute the same slots. How many times a schedule already fired is the caller's state;
``fire_times`` takes it as ``fired`` and stops at the trigger's ``max_count``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

from hetuflow_server.triggers._errors import InvalidSchedule
from hetuflow_server.triggers._window import (
    LATEST,
    as_utc,
    aware_utc,
    check_max_count,
    check_window,
    clamp_after,
)

__all__ = ["MAX_INTERVAL_SECS", "IntervalTrigger", "OnceTrigger", "Trigger", "fire_times"]

# One year, the bound hetuflow-core's ScheduleCreate also enforces.
MAX_INTERVAL_SECS = 31_536_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Trigger(Protocol):
    """When a schedule fires: a pure function from an instant to the next fire strictly after it."""

    @property
    def start(self) -> datetime | None:
        """No fire before this instant (inclusive bound), in UTC."""
        ...

    @property
    def end(self) -> datetime | None:
        """No fire after this instant (inclusive bound), in UTC."""
        ...

    @property
    def max_count(self) -> int | None:
        """How many fires the schedule has in total; ``fire_times`` enforces it, given ``fired``."""
        ...

    def next_fire_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after the aware instant ``after``, in UTC; None if there is none."""
        ...


def fire_times(
    trigger: Trigger,
    after: datetime,
    until: datetime | None = None,
    count: int | None = None,
    *,
    fired: int = 0,
) -> Iterator[datetime]:
    """Fire times strictly after ``after`` and at or before ``until``, in order, at most ``count`` of them.

    ``fired`` is how many times the schedule already fired; with the trigger's ``max_count`` it caps how many
    more are produced. Without ``until``, ``count`` or ``max_count`` the iterator may be endless.
    """
    limit = count
    if limit is not None and limit < 0:
        raise ValueError(f"count must not be negative, got {count}")
    if trigger.max_count is not None:
        left = max(trigger.max_count - fired, 0)
        limit = left if limit is None else min(limit, left)
    until_utc = None if until is None else as_utc(until, "until")
    produced = 0
    current = after
    while limit is None or produced < limit:
        fire = trigger.next_fire_after(current)
        if fire is None or (until_utc is not None and fire > until_utc):
            return
        yield fire
        produced += 1
        current = fire


class IntervalTrigger:
    """Fires every ``seconds`` seconds from ``anchor``: exactly ``anchor + k * seconds`` for k = 0, 1, 2, ...

    Fires are counted in absolute time, so daylight saving never moves them and they never drift. The anchor
    defaults to ``start``, else to the Unix epoch, so that every server computes the same slots.
    """

    def __init__(
        self,
        seconds: int,
        anchor: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        max_count: int | None = None,
    ) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise InvalidSchedule("interval_secs", f"must be an integer, not {type(seconds).__name__}")
        if not 1 <= seconds <= MAX_INTERVAL_SECS:
            raise InvalidSchedule(
                "interval_secs", f"must be between 1 and {MAX_INTERVAL_SECS} (one year), got {seconds}"
            )
        self.seconds = seconds
        self.start, self.end = check_window(start, end)
        self.max_count = check_max_count(max_count)
        if anchor is not None:
            self.anchor = as_utc(anchor, "anchor")
        else:
            self.anchor = self.start if self.start is not None else _UNIX_EPOCH
        self._step = timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return (
            f"IntervalTrigger(seconds={self.seconds}, anchor={self.anchor.isoformat()}, "
            f"start={self.start}, end={self.end}, max_count={self.max_count})"
        )

    def next_fire_after(self, after: datetime) -> datetime | None:
        after = clamp_after(after, self.start)
        # timedelta // timedelta is exact integer division of microseconds: no float, no drift.
        k = max(0, (after - self.anchor) // self._step + 1)
        try:
            fire = self.anchor + self._step * k
        except OverflowError:
            return None
        if fire > LATEST or (self.end is not None and fire > self.end):
            return None
        return fire


class OnceTrigger:
    """Fires once, at ``at``."""

    def __init__(self, at: datetime) -> None:
        self.at = aware_utc(at, "start_time")

    def __repr__(self) -> str:
        return f"OnceTrigger(at={self.at.isoformat()})"

    @property
    def start(self) -> datetime:
        return self.at

    @property
    def end(self) -> datetime:
        return self.at

    @property
    def max_count(self) -> None:
        return None

    def next_fire_after(self, after: datetime) -> datetime | None:
        return self.at if as_utc(after, "after") < self.at else None
