"""CronTrigger against a deliberately naive oracle, across real 2025/2026 DST transitions.

The oracle shares no code with the scheduler: it parses cron fields its own simple way, steps through every
UTC minute (or second, for 6-field expressions) of a window, reads the wall clock with zoneinfo, and applies
the rules of docs/scheduling.md literally:

* wildcard job (seconds, minute or hour field starts with ``*``): fire at every instant whose wall matches;
* fixed-time job: fire at an instant whose wall matches unless it is the second pass of a repeated span
  (``fold == 1``); and when the wall clock jumps forward, fire at the first instant after the jump if any
  skipped wall-clock time matches.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hetuflow_server.triggers import CronTrigger, fire_times

# ----------------------------------------------------------------------------------------------------
# The oracle


_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NAMES = {
    **{
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
    **{d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}


def _expand(text: str, low: int, high: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        else:
            a, _, b = span.partition("-")
            first = int(a) if a.isdigit() else _NAMES[a.lower()]
            last = (int(b) if b.isdigit() else _NAMES[b.lower()]) if b else first
        out.update(range(first, last + 1, int(step) if step else 1))
    return frozenset(out)


@dataclass(frozen=True)
class Oracle:
    """A cron expression the slow, obvious way."""

    expression: str

    @functools.cached_property
    def fields(self) -> list[str]:
        parts = _ALIASES.get(self.expression.lower(), self.expression).split()
        return parts if len(parts) == 6 else ["0", *parts]

    @functools.cached_property
    def sets(self) -> tuple[frozenset[int], ...]:
        bounds = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
        sets = [_expand(f, lo, hi) for f, (lo, hi) in zip(self.fields, bounds, strict=True)]
        sets[5] = frozenset(d % 7 for d in sets[5])
        return tuple(sets)

    @property
    def wildcard(self) -> bool:
        explicit_seconds = len(_ALIASES.get(self.expression.lower(), self.expression).split()) == 6
        checked = self.fields[0:3] if explicit_seconds else self.fields[1:3]
        return any(f.startswith("*") for f in checked)

    def matcher(self) -> Callable[[datetime], bool]:
        """``wall -> bool``: every field matches, days by Vixie's AND/OR rule."""
        sec, minute, hour, dom, month, dow = self.sets
        either = not self.fields[3].startswith("*") and not self.fields[5].startswith("*")

        def matches(wall: datetime) -> bool:
            if wall.second not in sec or wall.minute not in minute or wall.hour not in hour:
                return False
            if wall.month not in month:
                return False
            dom_ok = wall.day in dom
            dow_ok = wall.isoweekday() % 7 in dow
            return (dom_ok or dow_ok) if either else (dom_ok and dow_ok)

        return matches


_Point = tuple[datetime, datetime, int]


def _timeline(zone: str, first: datetime, last: datetime, step_s: int) -> Iterator[_Point]:
    """(instant, wall clock, fold) for every step from one before ``first`` to ``last``."""
    tz = ZoneInfo(zone)
    step = timedelta(seconds=step_s)
    u = first - step
    while u <= last:
        local = u.astimezone(tz)
        yield u, local.replace(tzinfo=None), local.fold
        u += step


@functools.cache
def _cached_timeline(zone: str, first: datetime, last: datetime, step_s: int) -> tuple[_Point, ...]:
    return tuple(_timeline(zone, first, last, step_s))


def oracle_fires(
    expression: str, zone: str, first: datetime, last: datetime, *, cache: bool = True
) -> list[datetime]:
    oracle = Oracle(expression)
    step_s = 1 if len(expression.split()) == 6 else 60
    step = timedelta(seconds=step_s)
    timeline = iter((_cached_timeline if cache else _timeline)(zone, first, last, step_s))
    _, prev_wall, _ = next(timeline)
    matches = oracle.matcher()
    wildcard = oracle.wildcard
    fires: set[datetime] = set()
    for u, wall, fold in timeline:
        if wildcard:
            if matches(wall):
                fires.add(u)
        else:
            if matches(wall) and fold == 0:
                fires.add(u)
            skipped = prev_wall + step
            while skipped < wall:  # the wall clock jumped forward past these times
                if matches(skipped):
                    fires.add(u)
                    break
                skipped += step
        prev_wall = wall
    return sorted(fires)


def trigger_fires(expression: str, zone: str, first: datetime, last: datetime) -> list[datetime]:
    trigger = CronTrigger(expression, zone)
    return list(fire_times(trigger, first - timedelta(microseconds=1), until=last))


# ----------------------------------------------------------------------------------------------------
# The table: real transitions (UTC instants) of each zone in 2025 and 2026.

_Z = UTC
TRANSITIONS: dict[str, list[datetime]] = {
    "America/New_York": [
        datetime(2025, 3, 9, 7, tzinfo=_Z),
        datetime(2025, 11, 2, 6, tzinfo=_Z),
        datetime(2026, 3, 8, 7, tzinfo=_Z),
        datetime(2026, 11, 1, 6, tzinfo=_Z),
    ],
    "Europe/London": [
        datetime(2025, 3, 30, 1, tzinfo=_Z),
        datetime(2025, 10, 26, 1, tzinfo=_Z),
        datetime(2026, 3, 29, 1, tzinfo=_Z),
        datetime(2026, 10, 25, 1, tzinfo=_Z),
    ],
    "Australia/Lord_Howe": [
        datetime(2025, 4, 5, 15, tzinfo=_Z),
        datetime(2025, 10, 4, 15, 30, tzinfo=_Z),
        datetime(2026, 4, 4, 15, tzinfo=_Z),
        datetime(2026, 10, 3, 15, 30, tzinfo=_Z),
    ],
}
# Other shapes of offset change: a skipped day, a half-hour gap, a fold outside DST, 45-minute offsets.
ODD_TRANSITIONS: dict[str, list[datetime]] = {
    "Pacific/Apia": [datetime(2011, 12, 30, 10, tzinfo=_Z)],  # 29 Dec 23:59:59 -10:00 -> 31 Dec 00:00 +14:00
    "America/Caracas": [datetime(2016, 5, 1, 7, tzinfo=_Z)],  # 02:30 -04:30 -> 03:00 -04:00
    "Europe/Moscow": [datetime(2014, 10, 25, 22, tzinfo=_Z)],  # 02:00 +04:00 -> 01:00 +03:00
    "Pacific/Chatham": [datetime(2025, 4, 5, 14, tzinfo=_Z), datetime(2025, 9, 27, 14, tzinfo=_Z)],
    "America/St_Johns": [datetime(2025, 3, 9, 5, 30, tzinfo=_Z), datetime(2025, 11, 2, 4, 30, tzinfo=_Z)],
}
# Zones without DST get windows on the same days, to show nothing special happens there.
NO_DST = {"UTC": TRANSITIONS["America/New_York"], "Asia/Kolkata": TRANSITIONS["America/New_York"]}
WINDOWS = [(zone, t) for zone, ts in (TRANSITIONS | ODD_TRANSITIONS | NO_DST).items() for t in ts]

FIVE_FIELDS = [
    "* * * * *",
    "*/5 * * * *",
    "*/7 * * * *",
    "0 * * * *",
    "30 * * * *",
    "15,45 * * * *",
    "0 */2 * * *",
    "*/10 1-2 * * *",
    "* 1 * * *",
    "* 2 * * *",
    "0 1 * * *",
    "30 1 * * *",
    "45 1 * * *",
    "59 1 * * *",
    "0 2 * * *",
    "15 2 * * *",
    "30 2 * * *",
    "59 2 * * *",
    "0 3 * * *",
    "45 2 * * *",
    "15 3 * * *",
    "0,15,30,45 2 * * *",
    "0 2-3 * * *",
    "0,30 1-3 * * *",
    "0 0-23/2 * * *",
    "0 0-23 * * *",
    "10-50/20 0-4 * * *",
    "0 0 * * *",
    "@daily",
    "@hourly",
    "30 1 * * SUN",
    "30 2 * * 0",
    "0 2 1-7 * SUN",
    "0 2 */2 * SUN",
    "30 1,2 * * MON-FRI",
    "0 12 * * *",
    "30 2 * MAR,APR,OCT,NOV *",
]
SIX_FIELDS = [
    "0 30 2 * * *",
    "30 0 2 * * *",
    "15 59 1 * * *",
    "59 59 1 * * *",
    "0 0 2 * * *",
    "10 15,45 1,2 * * *",
    "*/20 * 1-2 * * *",
    "0 * * * * *",
    "*/30 30 1 * * *",
    "0 0 * * * *",
    "* 0 2 * * *",
]
FIVE_FIELD_SPAN = timedelta(hours=30)  # minute steps either side of the transition
SIX_FIELD_SPAN = timedelta(minutes=75)  # second steps either side of the transition


def test_the_table_uses_real_transitions() -> None:
    for zone, instants in (TRANSITIONS | ODD_TRANSITIONS).items():
        tz = ZoneInfo(zone)
        for t in instants:
            assert (t - timedelta(seconds=1)).astimezone(tz).utcoffset() != t.astimezone(tz).utcoffset()
    for zone, instants in NO_DST.items():
        tz = ZoneInfo(zone)
        for t in instants:
            assert (t - FIVE_FIELD_SPAN).astimezone(tz).utcoffset() == (t + FIVE_FIELD_SPAN).astimezone(
                tz
            ).utcoffset()


CASES = [(expr, zone, t, FIVE_FIELD_SPAN) for expr in FIVE_FIELDS for zone, t in WINDOWS] + [
    (expr, zone, t, SIX_FIELD_SPAN) for expr in SIX_FIELDS for zone, t in WINDOWS
]


def _probes(transition: datetime, fires: list[datetime]) -> list[datetime]:
    """Instants to ask from: at and around the transition, and just before each fire within 3 hours of it."""
    tiny = timedelta(microseconds=1)
    probes = [transition + k * _ONE_S for k in (-2, -1, 0, 1, 2)] + [transition - tiny, transition + tiny]
    probes += [transition + timedelta(minutes=m) for m in range(-150, 151, 10)]
    for fire in fires:
        if abs(fire - transition) <= timedelta(hours=3):
            probes += [fire - tiny, fire - _ONE_S]
    return probes


def test_oracle_table_has_zero_disagreements() -> None:
    """Every expression x zone x transition: the trigger's fires equal the oracle's, instant for instant,
    and asking from any probe instant gives the oracle's next fire."""
    disagreements = []
    asked = 0
    for expression, zone, transition, span in CASES:
        first, last = transition - span, transition + span
        expected = oracle_fires(expression, zone, first, last)
        actual = trigger_fires(expression, zone, first, last)
        if actual != expected:
            disagreements.append((expression, zone, transition, sorted(set(actual) ^ set(expected))[:4]))
        trigger = CronTrigger(expression, zone)
        for probe in _probes(transition, expected):
            index = bisect.bisect_right(expected, probe)
            want = expected[index] if index < len(expected) else None
            if probe < first or want is None:
                continue  # the oracle does not know what lies outside its window
            asked += 1
            if trigger.next_fire_after(probe) != want:
                disagreements.append((expression, zone, transition, [probe]))
    assert len(CASES) == (len(FIVE_FIELDS) + len(SIX_FIELDS)) * len(WINDOWS) == 1296
    assert asked > 50_000
    assert disagreements == []


def test_the_oracle_sees_the_dst_cases() -> None:
    """Guard against a vacuous table: the famous cases differ from naive wall-clock matching."""
    ny_spring = TRANSITIONS["America/New_York"][0]
    fires = oracle_fires(
        "30 2 * * *", "America/New_York", ny_spring - FIVE_FIELD_SPAN, ny_spring + FIVE_FIELD_SPAN
    )
    assert ny_spring in fires
    ny_fall = TRANSITIONS["America/New_York"][1]
    hourly = oracle_fires("0 * * * *", "America/New_York", ny_fall - timedelta(hours=2), ny_fall)
    assert hourly == [ny_fall - timedelta(hours=2), ny_fall - timedelta(hours=1), ny_fall]


# ----------------------------------------------------------------------------------------------------
# Random expressions against the oracle, near the same transitions.

_FIELD_BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


@st.composite
def _item(draw: st.DrawFn, low: int, high: int, names: list[str] | None) -> str:
    def value(v: int) -> str:
        if names and draw(st.booleans()):
            return names[v - low] if v - low < len(names) else str(v)
        return str(v)

    shape = draw(st.sampled_from(["*", "*/n", "a", "a-b", "a-b/n"]))
    if shape == "*":
        return "*"
    if shape == "*/n":
        return f"*/{draw(st.integers(1, high - low + 1))}"
    a = draw(st.integers(low, high))
    if shape == "a":
        return value(a)
    b = draw(st.integers(a, high))
    if shape == "a-b":
        return f"{value(a)}-{value(b)}"
    return f"{value(a)}-{value(b)}/{draw(st.integers(1, 30))}"


def _field(index: int, hot: list[int] | None = None) -> st.SearchStrategy[str]:
    low, high = _FIELD_BOUNDS[index]
    names = None
    if index == 4:
        names = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    elif index == 5:
        names = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]  # 7 stays a number: SUN is 0
    items = _item(low, high, names)
    if hot:  # bias towards the hours around transitions so that the DST rules are exercised
        items = st.one_of(items, st.sampled_from([str(h) for h in hot]))
    return st.lists(items, min_size=1, max_size=3).map(",".join)


@st.composite
def cron_expressions(draw: st.DrawFn, seconds: bool) -> str:
    fields = [
        draw(_field(1)),
        draw(_field(2, hot=[0, 1, 2, 3])),
        draw(st.one_of(st.just("*"), _field(3))),
        draw(st.one_of(st.just("*"), _field(4))),
        draw(st.one_of(st.just("*"), _field(5))),
    ]
    if seconds:
        fields.insert(0, draw(_field(0)))
    return " ".join(fields)


_ONE_S = timedelta(seconds=1)
_ALL_WINDOWS = [(zone, t) for zone, ts in (TRANSITIONS | ODD_TRANSITIONS).items() for t in ts]


@settings(max_examples=180, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), window=st.sampled_from(_ALL_WINDOWS), seconds=st.booleans())
def test_random_expressions_agree_with_oracle(
    data: st.DataObject, window: tuple[str, datetime], seconds: bool
) -> None:
    zone, transition = window
    expression = data.draw(cron_expressions(seconds=seconds), label="expression")
    # The oracle steps by the second for 6 fields (20 minutes of them), else by the minute (8 hours).
    span, step = (timedelta(minutes=20), _ONE_S) if seconds else (timedelta(hours=8), 60 * _ONE_S)
    shift = data.draw(st.integers(-span // step, 0), label="shift_steps") * step
    first, last = transition + shift, transition + shift + span
    expected = oracle_fires(expression, zone, first, last, cache=False)
    assert trigger_fires(expression, zone, first, last) == expected


YEAR_CASES = [
    # Both New York transitions for minute-level wildcard and fixed-time jobs.
    ("*/30 * * * *", "America/New_York"),
    ("30 1,2 * * *", "America/New_York"),
    ("0 2 * * SUN", "Australia/Lord_Howe"),
    # Wildcard jobs whose next fire is months away, with transitions in between.
    ("0 * 2 11 *", "America/New_York"),
    ("*/15 1-2 * 4,10 SUN", "Australia/Lord_Howe"),
]


@pytest.mark.parametrize(("expression", "zone"), YEAR_CASES)
def test_a_whole_year_agrees_with_oracle(expression: str, zone: str) -> None:
    first, last = datetime(2025, 1, 1, tzinfo=_Z), datetime(2026, 1, 1, tzinfo=_Z)
    expected = oracle_fires(expression, zone, first, last, cache=False)
    assert trigger_fires(expression, zone, first, last) == expected
