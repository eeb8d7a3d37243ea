"""Properties of cron fire times for random expressions, zones and instants (Hypothesis).

Whatever the expression: fires are strictly increasing whole UTC seconds; each one is a matching wall-clock
time (for fixed-time jobs, on its first occurrence) or a documented DST adjustment (a fixed-time job's skipped
time moved to the jump); and asking from any instant between two fires gives the later one.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hetuflow_server.triggers import CronTrigger, fire_times

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/St_Johns",
    "Europe/Berlin",
]
_SECOND = timedelta(seconds=1)


def _values(low: int, high: int) -> st.SearchStrategy[str]:
    single = st.integers(low, high).map(str)
    span = st.tuples(st.integers(low, high), st.integers(low, high)).map(lambda ab: f"{min(ab)}-{max(ab)}")
    stepped = st.tuples(span, st.integers(1, 20)).map(lambda s: f"{s[0]}/{s[1]}")
    star = st.sampled_from(["*", "*/2", "*/5", "*/15"])
    return st.lists(st.one_of(single, span, stepped, star), min_size=1, max_size=3).map(",".join)


expressions = st.builds(
    lambda sec, minute, hour, dom, month, dow, six: " ".join(
        ([sec] if six else []) + [minute, hour, dom, month, dow]
    ),
    _values(0, 59),
    _values(0, 59),
    st.one_of(_values(0, 23), st.sampled_from(["1", "2", "1-3", "0,2"])),
    st.one_of(st.just("*"), _values(1, 31)),
    st.one_of(st.just("*"), _values(1, 12)),
    st.one_of(st.just("*"), _values(0, 7)),
    st.booleans(),
)
# Instants around the 2025 transitions of the zones above, where the interesting cases live.
instants = st.one_of(
    st.datetimes(datetime(2025, 3, 8), datetime(2025, 4, 7)),
    st.datetimes(datetime(2025, 9, 26), datetime(2025, 11, 3)),
    st.datetimes(datetime(2024, 1, 1), datetime(2027, 1, 1)),
).map(lambda naive: naive.replace(tzinfo=UTC))


def _is_jump(instant: datetime, zone: ZoneInfo) -> bool:
    before = (instant - _SECOND).astimezone(zone).utcoffset()
    after = instant.astimezone(zone).utcoffset()
    assert before is not None
    assert after is not None
    return after > before


def _skipped_walls(instant: datetime, zone: ZoneInfo) -> list[datetime]:
    """The wall-clock seconds that the jump at ``instant`` skips."""
    first = ((instant - _SECOND).astimezone(zone) + _SECOND).replace(tzinfo=None)
    last = instant.astimezone(zone).replace(tzinfo=None)
    return [first + _SECOND * i for i in range(int((last - first) / _SECOND))]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=expressions, zone_name=st.sampled_from(ZONES), after=instants)
def test_fires_are_ordered_matching_or_documented_adjustments(
    expression: str, zone_name: str, after: datetime
) -> None:
    zone = ZoneInfo(zone_name)
    trigger = CronTrigger(expression, zone)
    fires = list(fire_times(trigger, after, count=40))
    for earlier, later in itertools.pairwise(fires):
        assert earlier < later
    for fire in fires:
        assert fire.tzinfo is UTC
        assert fire.microsecond == 0
        assert fire > after
        local = fire.astimezone(zone)
        wall = local.replace(tzinfo=None)
        if trigger.expression.matches(wall) and (trigger.expression.wildcard or local.fold == 0):
            continue
        # Not a plain match: must be a fixed-time job's skipped time, fired at the jump.
        assert not trigger.expression.wildcard, fire
        assert _is_jump(fire, zone), fire
        assert any(trigger.expression.matches(w) for w in _skipped_walls(fire, zone)), fire


@settings(max_examples=150, deadline=None)
@given(
    expression=expressions,
    zone_name=st.sampled_from(ZONES),
    after=instants,
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=5),
)
def test_asking_between_fires_gives_the_next_fire(
    expression: str, zone_name: str, after: datetime, fractions: list[float]
) -> None:
    trigger = CronTrigger(expression, zone_name)
    fires = list(fire_times(trigger, after, count=10))
    assume(len(fires) >= 2)
    for earlier, later in itertools.pairwise(fires):
        assert trigger.next_fire_after(earlier) == later
        for fraction in fractions:
            probe = earlier + (later - earlier) * fraction
            if probe < later:
                assert trigger.next_fire_after(probe) == later


@settings(max_examples=100, deadline=None)
@given(
    expression=expressions,
    zone_name=st.sampled_from(ZONES),
    start=instants,
    length_h=st.integers(0, 72),
)
def test_window_bounds_hold(expression: str, zone_name: str, start: datetime, length_h: int) -> None:
    end = start + timedelta(hours=length_h)
    bounded = CronTrigger(expression, zone_name, start=start, end=end)
    unbounded = CronTrigger(expression, zone_name)
    inside = list(fire_times(bounded, start - timedelta(days=1), count=50))
    expected = list(fire_times(unbounded, start - timedelta(microseconds=1), until=end, count=50))
    assert inside == expected
    assert all(start <= f <= end for f in inside)
