"""The cron trigger: a cron expression read in an IANA time zone, with Debian cron's daylight-saving rules.

Wall-clock times that match the expression become instants by one of two rules (docs/scheduling.md):

* a **wildcard job** (its seconds, minute or hour field starts with ``*``) fires at every instant whose wall
  clock matches: twice in a repeated hour, never in a skipped one;
* a **fixed-time job** (any other) fires once per matching wall-clock time: at its first occurrence when the
  clock falls back, and at the end of the gap (the instant of the jump) when spring-forward skips it; several
  skipped times collapse into that one fire.

Both searches walk matching wall-clock times with ``CronExpression.next_match`` and convert them with
zoneinfo's ``fold`` rules, so a fire is found in a handful of steps however far away it is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hetuflow_server.triggers._cron import CronExpression, parse_cron
from hetuflow_server.triggers._timezone import first_offset_change, load_timezone, next_offset_change
from hetuflow_server.triggers._window import LATEST, check_max_count, check_window, clamp_after

__all__ = ["CronTrigger"]

_SECOND = timedelta(seconds=1)


class CronTrigger:
    """Fires when the wall clock of ``timezone`` matches ``expression``, within ``[start, end]``."""

    def __init__(
        self,
        expression: CronExpression | str,
        timezone: ZoneInfo | str = "UTC",
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        max_count: int | None = None,
    ) -> None:
        self.expression = parse_cron(expression) if isinstance(expression, str) else expression
        self.timezone = load_timezone(timezone) if isinstance(timezone, str) else timezone
        self.start, self.end = check_window(start, end)
        self.max_count = check_max_count(max_count)

    def __repr__(self) -> str:
        return (
            f"CronTrigger({self.expression.source!r}, {self.timezone.key!r}, "
            f"start={self.start}, end={self.end}, max_count={self.max_count})"
        )

    def next_fire_after(self, after: datetime) -> datetime | None:
        after = clamp_after(after, self.start)
        if after >= LATEST:
            return None
        # Cron has one-second resolution: the first candidate is the next whole second.
        candidate = after.replace(microsecond=0) + _SECOND
        search = self._next_wildcard if self.expression.wildcard else self._next_fixed
        fire = search(candidate)
        if fire is None or fire > LATEST or (self.end is not None and fire > self.end):
            return None
        return fire

    def _next_wildcard(self, t: datetime) -> datetime | None:
        """First instant at or after ``t`` whose wall clock matches, walking one steady offset at a time."""
        zone = self.timezone
        while True:
            local = t.astimezone(zone)
            offset = local.utcoffset()
            assert offset is not None
            wall = self.expression.next_match(local.replace(tzinfo=None))
            if wall is None:
                return None
            # Valid only if the offset holds from t to the fire; otherwise resume at the change, where the
            # wall clock replays earlier times (fall-back) or skips ahead (spring-forward).
            fire = (wall - offset).replace(tzinfo=UTC)
            change = next_offset_change(t, fire, zone) if fire > t else None
            if change is None:
                return fire
            t = change

    def _next_fixed(self, t: datetime) -> datetime | None:
        """First matching wall-clock time whose instant (first occurrence, or end of gap) is at or after t."""
        zone = self.timezone
        local = t.astimezone(zone)
        if local.fold:
            # t lies in the second pass of a repeated span: its times already fired on the first pass.
            wall = self._end_of_fold(t, local.replace(tzinfo=None))
        else:
            # The wall clock one second before t, plus one second: the same as t's wall clock, except when t
            # is the instant of a jump forward, whose skipped times fire at t itself.
            wall = (t - _SECOND).astimezone(zone).replace(tzinfo=None) + _SECOND
        match = self.expression.next_match(wall)
        while match is not None:
            fire = self._first_instant(match)
            if fire >= t:
                return fire
            # Unreachable while instants grow with wall-clock times: a surprise costs time, never a fire.
            match = self.expression.next_match(match + _SECOND)
        return None

    def _first_instant(self, wall: datetime) -> datetime:
        """When a fixed-time job fires for ``wall``: its only or first occurrence, or the end of its gap."""
        zone = self.timezone
        earlier = wall.replace(tzinfo=zone).utcoffset()
        later = wall.replace(tzinfo=zone, fold=1).utcoffset()
        assert earlier is not None
        assert later is not None
        if earlier >= later:
            # Unique (equal offsets) or repeated (fold=0 is the first occurrence).
            return (wall - earlier).replace(tzinfo=UTC)
        # In a gap, zoneinfo maps fold=1 to an instant before the jump and fold=0 to one after it.
        return first_offset_change(
            (wall - later).replace(tzinfo=UTC), (wall - earlier).replace(tzinfo=UTC), zone
        )

    def _end_of_fold(self, t: datetime, wall: datetime) -> datetime:
        """The wall-clock time at which the repeated span containing ``t`` (second pass) ends."""
        zone = self.timezone
        before = wall.replace(tzinfo=zone).utcoffset()
        assert before is not None
        first_pass = (wall - before).replace(tzinfo=UTC)
        jump = first_offset_change(first_pass, t, zone)
        return (jump + before).replace(tzinfo=None)
