"""The famous daylight-saving cases, written out by hand (docs/scheduling.md has the same examples)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hetuflow_server.triggers import CronTrigger, fire_times

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local_day(expression: str, zone: ZoneInfo, year: int, month: int, day: int) -> list[str]:
    """Fires whose wall clock falls on that local date, as ISO strings with their offsets."""
    start = datetime(year, month, day, tzinfo=zone).astimezone(UTC)
    end = (datetime(year, month, day, tzinfo=zone) + timedelta(days=1)).astimezone(UTC)
    trigger = CronTrigger(expression, zone)
    fires = fire_times(trigger, start - timedelta(microseconds=1), until=end - timedelta(microseconds=1))
    return [fire.astimezone(zone).isoformat() for fire in fires]


def test_new_york_spring_forward_fixed_time_fires_once_at_the_jump() -> None:
    assert local_day("30 2 * * *", NY, 2025, 3, 8) == ["2025-03-08T02:30:00-05:00"]
    assert local_day("30 2 * * *", NY, 2025, 3, 9) == ["2025-03-09T03:00:00-04:00"]
    assert local_day("30 2 * * *", NY, 2025, 3, 10) == ["2025-03-10T02:30:00-04:00"]
    fire = CronTrigger("30 2 * * *", "America/New_York").next_fire_after(utc(2025, 3, 9, 0))
    assert fire == utc(2025, 3, 9, 7, 0)


@pytest.mark.parametrize(
    "after",
    [
        utc(2025, 3, 9, 6, 59, 59),
        datetime(2025, 3, 9, 6, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 3, 9, 6, 59, 59, 1, tzinfo=UTC),
    ],
)
def test_asked_the_second_before_the_jump_the_skipped_time_fires_at_the_jump(after: datetime) -> None:
    for expression in ("30 2 * * *", "0 2 * * *", "0 30 2 * * *", "59 59 2 * * *"):
        trigger = CronTrigger(expression, "America/New_York")
        assert trigger.next_fire_after(after) == utc(2025, 3, 9, 7, 0), expression
        following = trigger.next_fire_after(utc(2025, 3, 9, 7, 0))
        assert following is not None
        assert following.astimezone(NY).date().isoformat() == "2025-03-10", expression


def test_several_skipped_times_collapse_into_one_fire() -> None:
    assert local_day("0,15,30,45 2 * * *", NY, 2025, 3, 9) == ["2025-03-09T03:00:00-04:00"]
    # 02:00 is skipped and 03:00 is real: both land on the same instant, one fire.
    assert local_day("0 2,3 * * *", NY, 2025, 3, 9) == ["2025-03-09T03:00:00-04:00"]
    assert local_day("0 2,4 * * *", NY, 2025, 3, 9) == [
        "2025-03-09T03:00:00-04:00",
        "2025-03-09T04:00:00-04:00",
    ]


def test_seconds_precision_fixed_time_fires_at_the_jump_instant() -> None:
    fire = CronTrigger("15 30 2 * * *", "America/New_York").next_fire_after(utc(2025, 3, 9, 0))
    assert fire == utc(2025, 3, 9, 7, 0, 0)


def test_new_york_fall_back_fixed_time_fires_once_on_first_occurrence() -> None:
    assert local_day("30 1 * * *", NY, 2025, 11, 2) == ["2025-11-02T01:30:00-04:00"]
    trigger = CronTrigger("30 1 * * *", "America/New_York")
    assert trigger.next_fire_after(utc(2025, 11, 2, 0)) == utc(2025, 11, 2, 5, 30)
    # Asked from inside the second pass (01:10 EST), the next fire is the next day's.
    assert trigger.next_fire_after(utc(2025, 11, 2, 6, 10)) == utc(2025, 11, 3, 6, 30)


def test_hourly_wildcard_fires_in_both_repeated_hours() -> None:
    fires = local_day("0 * * * *", NY, 2025, 11, 2)
    assert len(fires) == 25
    assert fires[:4] == [
        "2025-11-02T00:00:00-04:00",
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]
    assert len(local_day("@hourly", NY, 2025, 11, 2)) == 25


def test_hourly_wildcard_has_no_slot_in_the_gap() -> None:
    fires = local_day("0 * * * *", NY, 2025, 3, 9)
    assert len(fires) == 23
    assert fires[1:3] == ["2025-03-09T01:00:00-05:00", "2025-03-09T03:00:00-04:00"]
    assert local_day("*/5 2 * * *", NY, 2025, 3, 9) == []


def test_minute_wildcard_in_a_fixed_hour_runs_by_the_clock() -> None:
    # "*/20 1 * * *" is a wildcard job (minute starts with '*'): the repeated 1 o'clock hour runs twice.
    assert local_day("*/20 1 * * *", NY, 2025, 11, 2) == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:20:00-04:00",
        "2025-11-02T01:40:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T01:20:00-05:00",
        "2025-11-02T01:40:00-05:00",
    ]


def test_explicit_hour_range_is_fixed_time() -> None:
    # "0 0-23 * * *" lists every hour but does not start with '*': fixed-time, so 01:00 fires once.
    fires = local_day("0 0-23 * * *", NY, 2025, 11, 2)
    assert len(fires) == 24
    assert fires[1:3] == ["2025-11-02T01:00:00-04:00", "2025-11-02T02:00:00-05:00"]


def test_lord_howe_half_hour_spring_forward() -> None:
    # 2025-10-05: 02:00 +10:30 jumps to 02:30 +11:00.
    assert local_day("15 2 * * *", LORD_HOWE, 2025, 10, 5) == ["2025-10-05T02:30:00+11:00"]
    assert local_day("30 2 * * *", LORD_HOWE, 2025, 10, 5) == ["2025-10-05T02:30:00+11:00"]
    assert local_day("15 2 * * *", LORD_HOWE, 2025, 10, 6) == ["2025-10-06T02:15:00+11:00"]
    assert local_day("*/15 2 * * *", LORD_HOWE, 2025, 10, 5) == [
        "2025-10-05T02:30:00+11:00",
        "2025-10-05T02:45:00+11:00",
    ]


def test_lord_howe_half_hour_fall_back() -> None:
    # 2025-04-06: 02:00 +11:00 falls back to 01:30 +10:30, so 01:30-01:59 happens twice.
    assert local_day("45 1 * * *", LORD_HOWE, 2025, 4, 6) == ["2025-04-06T01:45:00+11:00"]
    assert local_day("*/15 1 * * *", LORD_HOWE, 2025, 4, 6) == [
        "2025-04-06T01:00:00+11:00",
        "2025-04-06T01:15:00+11:00",
        "2025-04-06T01:30:00+11:00",
        "2025-04-06T01:45:00+11:00",
        "2025-04-06T01:30:00+10:30",
        "2025-04-06T01:45:00+10:30",
    ]
    # 01:00 is not repeated there, so the hourly job fires 24 times that day... plus nothing: the repeated
    # half hour has no o'clock minute.
    assert len(local_day("0 * * * *", LORD_HOWE, 2025, 4, 6)) == 24


def test_london_transitions() -> None:
    # 2025-03-30: 01:00 GMT jumps to 02:00 BST; 2025-10-26: 02:00 BST falls back to 01:00 GMT.
    assert local_day("30 1 * * *", LONDON, 2025, 3, 30) == ["2025-03-30T02:00:00+01:00"]
    assert local_day("30 1 * * *", LONDON, 2025, 10, 26) == ["2025-10-26T01:30:00+01:00"]
    assert len(local_day("30 * * * *", LONDON, 2025, 10, 26)) == 25


@pytest.mark.parametrize(("month", "day"), [(3, 9), (11, 2), (4, 6), (10, 5)])
def test_kolkata_has_no_dst(month: int, day: int) -> None:
    assert local_day("30 2 * * *", KOLKATA, 2025, month, day) == [f"2025-{month:02}-{day:02}T02:30:00+05:30"]
    assert len(local_day("0 * * * *", KOLKATA, 2025, month, day)) == 24


def test_interval_like_cron_in_utc_is_plain() -> None:
    trigger = CronTrigger("*/15 * * * *")
    assert list(fire_times(trigger, utc(2025, 3, 9, 6, 50), count=3)) == [
        utc(2025, 3, 9, 7, 0),
        utc(2025, 3, 9, 7, 15),
        utc(2025, 3, 9, 7, 30),
    ]
