"""Interval and once triggers, windows, max_count, fire_times, time zones and build_trigger's validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from hetuflow_server.triggers import (
    MAX_INTERVAL_SECS,
    CronTrigger,
    IntervalTrigger,
    InvalidSchedule,
    OnceTrigger,
    Trigger,
    build_trigger,
    fire_times,
    load_timezone,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- interval


def test_interval_fires_at_anchor_plus_multiples() -> None:
    trigger = IntervalTrigger(90, start=utc(2025, 1, 1, 0, 0, 0))
    assert list(fire_times(trigger, utc(2024, 1, 1), count=3)) == [
        utc(2025, 1, 1, 0, 0, 0),
        utc(2025, 1, 1, 0, 1, 30),
        utc(2025, 1, 1, 0, 3, 0),
    ]
    assert trigger.next_fire_after(utc(2025, 1, 1, 0, 1, 30)) == utc(2025, 1, 1, 0, 3, 0)
    assert trigger.next_fire_after(datetime(2025, 1, 1, 0, 1, 29, 999999, tzinfo=UTC)) == utc(
        2025, 1, 1, 0, 1, 30
    )


def test_interval_has_no_drift_after_a_million_steps() -> None:
    anchor = datetime(2025, 1, 1, 0, 0, 0, 123457, tzinfo=UTC)
    trigger = IntervalTrigger(7, anchor=anchor)
    later = anchor + timedelta(seconds=7 * 1_000_000)
    assert trigger.next_fire_after(later - timedelta(microseconds=1)) == later
    assert later.microsecond == 123457


def test_interval_ignores_daylight_saving() -> None:
    ny = ZoneInfo("America/New_York")
    trigger = IntervalTrigger(3600, anchor=datetime(2025, 11, 2, 0, 0, tzinfo=ny))
    fires = [f.astimezone(ny).isoformat() for f in fire_times(trigger, utc(2025, 11, 1), count=4)]
    assert fires == [
        "2025-11-02T00:00:00-04:00",
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]


def test_interval_without_start_is_aligned_to_the_unix_epoch() -> None:
    trigger = IntervalTrigger(3600)
    assert trigger.anchor == utc(1970, 1, 1)
    assert trigger.next_fire_after(utc(2025, 6, 1, 12, 34)) == utc(2025, 6, 1, 13, 0)


def test_interval_anchor_differs_from_start() -> None:
    trigger = IntervalTrigger(600, anchor=utc(2025, 1, 1, 0, 5), start=utc(2025, 1, 1, 1, 0))
    assert trigger.next_fire_after(utc(2025, 1, 1)) == utc(2025, 1, 1, 1, 5)
    # Fires never precede the anchor.
    late_anchor = IntervalTrigger(600, anchor=utc(2025, 1, 1, 2, 0), start=utc(2025, 1, 1, 1, 0))
    assert late_anchor.next_fire_after(utc(2025, 1, 1)) == utc(2025, 1, 1, 2, 0)


@pytest.mark.parametrize(
    ("seconds", "reason"),
    [
        (0, "must be between 1 and 31536000 (one year), got 0"),
        (-5, "got -5"),
        (MAX_INTERVAL_SECS + 1, "got 31536001"),
        (1.5, "must be an integer, not float"),
        (True, "must be an integer, not bool"),
        ("60", "must be an integer, not str"),
    ],
)
def test_interval_seconds_are_validated(seconds: object, reason: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        IntervalTrigger(seconds)  # type: ignore[arg-type]
    assert caught.value.field == "interval_secs"
    assert reason in caught.value.reason


# --- once


def test_once_fires_once() -> None:
    at = datetime(2025, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    trigger = OnceTrigger(at)
    assert trigger.next_fire_after(utc(2025, 5, 1)) == utc(2025, 5, 1, 10, 0)
    assert trigger.next_fire_after(utc(2025, 5, 1, 10, 0)) is None
    assert list(fire_times(trigger, utc(2025, 1, 1))) == [utc(2025, 5, 1, 10, 0)]
    assert trigger.next_fire_after(utc(2025, 5, 1)).tzinfo is UTC  # type: ignore[union-attr]


# --- windows and counts


def test_start_and_end_are_inclusive() -> None:
    trigger = CronTrigger("0 * * * *", "UTC", start=utc(2025, 1, 1, 1), end=utc(2025, 1, 1, 3))
    assert list(fire_times(trigger, utc(2024, 1, 1))) == [
        utc(2025, 1, 1, 1),
        utc(2025, 1, 1, 2),
        utc(2025, 1, 1, 3),
    ]
    interval = IntervalTrigger(3600, start=utc(2025, 1, 1, 1), end=utc(2025, 1, 1, 3))
    assert list(fire_times(interval, utc(2024, 1, 1))) == [utc(2025, 1, 1, h) for h in (1, 2, 3)]


def test_start_with_microseconds_rounds_up_to_the_next_cron_second() -> None:
    trigger = CronTrigger("* * * * * *", "UTC", start=datetime(2025, 1, 1, 0, 0, 0, 500, tzinfo=UTC))
    assert trigger.next_fire_after(utc(2024, 1, 1)) == utc(2025, 1, 1, 0, 0, 1)


def test_max_count_counts_past_fires() -> None:
    trigger = build_trigger("cron", cron_expression="0 * * * *", max_count=3)
    assert trigger is not None
    after = utc(2025, 1, 1)
    assert len(list(fire_times(trigger, after))) == 3
    assert len(list(fire_times(trigger, after, fired=2))) == 1
    assert list(fire_times(trigger, after, fired=3)) == []
    assert list(fire_times(trigger, after, fired=7)) == []
    assert len(list(fire_times(trigger, after, count=2))) == 2


def test_fire_times_until_is_inclusive_and_count_bounds() -> None:
    trigger = CronTrigger("*/10 * * * *")
    assert list(fire_times(trigger, utc(2025, 1, 1), until=utc(2025, 1, 1, 0, 30))) == [
        utc(2025, 1, 1, 0, 10),
        utc(2025, 1, 1, 0, 20),
        utc(2025, 1, 1, 0, 30),
    ]
    assert list(fire_times(trigger, utc(2025, 1, 1), count=0)) == []
    with pytest.raises(ValueError, match="count must not be negative"):
        list(fire_times(trigger, utc(2025, 1, 1), count=-1))


def test_naive_arguments_are_refused() -> None:
    trigger = CronTrigger("* * * * *")
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        trigger.next_fire_after(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="until must be a timezone-aware datetime"):
        list(fire_times(trigger, utc(2025, 1, 1), until=datetime(2025, 1, 2)))


def test_fires_are_utc_whatever_the_input_zone() -> None:
    trigger = CronTrigger("30 2 * * *", "Asia/Kolkata")
    fire = trigger.next_fire_after(datetime(2025, 6, 1, tzinfo=ZoneInfo("America/New_York")))
    assert fire == utc(2025, 6, 1, 21, 0)
    assert fire is not None
    assert fire.tzinfo is UTC


# --- far and never


def test_leap_day_is_found_years_ahead() -> None:
    trigger = CronTrigger("0 0 29 2 *")
    assert list(fire_times(trigger, utc(2025, 3, 1), count=2)) == [utc(2028, 2, 29), utc(2032, 2, 29)]
    # 2100 is not a leap year: from 2097 the next 29 February is in 2104.
    assert trigger.next_fire_after(utc(2097, 1, 1)) == utc(2104, 2, 29)


def test_wildcard_months_away_walks_across_transitions() -> None:
    trigger = CronTrigger("* * 29 2 *", "America/New_York")
    assert trigger.next_fire_after(utc(2025, 3, 1)) == utc(2028, 2, 29, 5, 0)


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30-31 2 *"])
def test_impossible_dates_never_fire(expression: str) -> None:
    trigger = CronTrigger(expression, "Europe/London")
    assert trigger.next_fire_after(utc(2025, 1, 1)) is None
    assert list(fire_times(trigger, utc(2025, 1, 1))) == []


def test_rare_but_possible_dates_fire() -> None:
    # Days 1 and 29 of February that are Mondays: '*/28' starts with '*', so both day fields must match.
    trigger = CronTrigger("0 0 */28 2 MON")
    fires = list(fire_times(trigger, utc(2025, 1, 1), count=3))
    assert fires == [utc(2027, 2, 1), utc(2038, 2, 1), utc(2044, 2, 1)]
    assert all(f.weekday() == 0 for f in fires)


def test_no_fire_beyond_the_last_supported_year() -> None:
    assert CronTrigger("0 0 1 1 *").next_fire_after(utc(9998, 6, 1)) is None
    assert IntervalTrigger(MAX_INTERVAL_SECS).next_fire_after(datetime(9999, 12, 31, tzinfo=UTC)) is None


def test_per_second_schedule_materialises_a_ten_minute_horizon() -> None:
    trigger = CronTrigger("*/1 * * * * *", "Europe/London")
    start = utc(2025, 3, 30, 0, 55)  # spans the spring-forward jump at 01:00 UTC
    fires = list(fire_times(trigger, start, until=start + timedelta(minutes=10)))
    assert len(fires) == 600
    assert fires == [start + timedelta(seconds=s) for s in range(1, 601)]


# --- time zones


def test_load_timezone() -> None:
    assert load_timezone("Australia/Lord_Howe").key == "Australia/Lord_Howe"
    assert load_timezone("UTC").key == "UTC"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "must not be empty"),
        ("Mars/Olympus_Mons", "unknown IANA time zone 'Mars/Olympus_Mons'"),
        ("america/new_york", "unknown IANA time zone 'america/new_york'; did you mean 'America/New_York'?"),
        ("Europe/Londn", "did you mean 'Europe/London'?"),
        ("America", "unknown IANA time zone 'America'"),
        ("../etc/passwd", "unknown IANA time zone '../etc/passwd'"),
        ("/etc/localtime", "unknown IANA time zone '/etc/localtime'"),
        ("localtime", "'localtime' is not an IANA zone name"),
        ("posix/Europe/Paris", "is not an IANA zone name"),
        ("right/UTC", "is not an IANA zone name"),
        ("zone.tab", "unknown IANA time zone 'zone.tab'"),
        ("+05:00", "unknown IANA time zone '+05:00'"),
    ],
)
def test_unknown_timezones_are_refused(name: str, reason: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        load_timezone(name)
    assert caught.value.field == "timezone"
    assert reason in caught.value.reason


# --- build_trigger


def test_build_each_kind() -> None:
    cron = build_trigger("cron", cron_expression="30 2 * * *", timezone="America/New_York")
    assert isinstance(cron, CronTrigger)
    assert cron.timezone.key == "America/New_York"
    interval = build_trigger("interval", interval_secs=60, start_time=utc(2025, 1, 1))
    assert isinstance(interval, IntervalTrigger)
    assert interval.anchor == utc(2025, 1, 1)
    once = build_trigger("once", start_time=utc(2025, 1, 1))
    assert isinstance(once, OnceTrigger)
    for kind in ("event", "daemon", "flow"):
        assert build_trigger(kind) is None


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        pytest.param(
            # Midnight in Tokyo (UTC+9, no daylight saving) is 15:00 UTC the day before.
            build_trigger("cron", cron_expression="@daily", timezone="Asia/Tokyo"),
            [utc(2024, 12, 31, 15), utc(2025, 1, 1, 15), utc(2025, 1, 2, 15)],
            id="cron",
        ),
        pytest.param(
            # No start: anchored at the Unix epoch, so the slots are the multiples of 5 s.
            build_trigger("interval", interval_secs=5),
            [utc(2024, 12, 31, 12, 0, 5), utc(2024, 12, 31, 12, 0, 10), utc(2024, 12, 31, 12, 0, 15)],
            id="interval",
        ),
        pytest.param(build_trigger("once", start_time=utc(2025, 1, 1)), [utc(2025, 1, 1)], id="once"),
    ],
)
def test_built_triggers_satisfy_the_protocol(trigger: Trigger | None, expected: list[datetime]) -> None:
    """The first three fire times after 2024-12-31 12:00 UTC (fewer when the trigger is done before), walked
    through ``next_fire_after`` alone and through ``fire_times``."""
    assert trigger is not None
    seen: list[datetime] = []
    moment = trigger.next_fire_after(utc(2024, 12, 31, 12))
    while moment is not None and len(seen) < 3:
        seen.append(moment)
        moment = trigger.next_fire_after(moment)
    assert seen == expected
    assert list(fire_times(trigger, utc(2024, 12, 31, 12), count=3)) == expected


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        (
            {"kind": "hourly"},
            "kind",
            "unknown kind 'hourly'; expected one of cron, interval, once, event, daemon, flow",
        ),
        ({"kind": "cron"}, "cron_expression", "required for cron schedules"),
        ({"kind": "cron", "cron_expression": "61 * * * *"}, "cron_expression", "field 'minute' value 61"),
        ({"kind": "cron", "cron_expression": "* * * * *", "timezone": "Nowhere"}, "timezone", "unknown IANA"),
        ({"kind": "interval"}, "interval_secs", "required for interval schedules"),
        ({"kind": "interval", "interval_secs": 0}, "interval_secs", "must be between 1 and"),
        ({"kind": "once"}, "start_time", "required for once schedules"),
        ({"kind": "once", "start_time": datetime(2025, 1, 1)}, "start_time", "must be timezone-aware"),
        (
            {"kind": "cron", "cron_expression": "@daily", "end_time": datetime(2025, 1, 1)},
            "end_time",
            "aware",
        ),
        (
            {
                "kind": "cron",
                "cron_expression": "@daily",
                "start_time": utc(2025, 2, 1),
                "end_time": utc(2025, 1, 1),
            },
            "end_time",
            "2025-01-01T00:00:00+00:00 is before start_time 2025-02-01T00:00:00+00:00",
        ),
        (
            {"kind": "cron", "cron_expression": "@daily", "max_count": 0},
            "max_count",
            "must be at least 1, got 0",
        ),
        ({"kind": "cron", "cron_expression": "@daily", "max_count": True}, "max_count", "must be an integer"),
        (
            {"kind": "interval", "interval_secs": 5, "cron_expression": "@daily"},
            "cron_expression",
            "only cron",
        ),
        ({"kind": "cron", "cron_expression": "@daily", "interval_secs": 5}, "interval_secs", "only interval"),
        ({"kind": "event", "cron_expression": "@daily"}, "cron_expression", "only cron schedules take one"),
        ({"kind": "event", "timezone": "Nowhere"}, "timezone", "unknown IANA"),
        ({"kind": "once", "start_time": "2025-01-01"}, "start_time", "must be a datetime, not str"),
    ],
)
def test_build_trigger_names_the_bad_field(kwargs: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        build_trigger(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert reason in caught.value.reason
