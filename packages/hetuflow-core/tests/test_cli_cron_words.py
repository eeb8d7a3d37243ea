"""``hetuflow cron``'s reading of cron expressions: the words for each shape of rule, which days match (Vixie
cron's day-of-month/day-of-week rule), Debian's wildcard rule, and the DST transitions and skipped or
repeated wall-clock times it asks the server about."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from hetuflow_core.cli._cronwords import describe, parse
from hetuflow_core.cli._dst import rule_times_in, transitions


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("30 2 * * *", "at 02:30 every day"),
        ("*/5 * * * *", "every 5 minutes"),
        ("* * * * *", "every minute"),
        ("0 * * * *", "every hour at minute 00"),
        ("@hourly", "every hour at minute 00"),
        ("0 */2 * * *", "every 2 hours at minute 00"),
        ("0 9-17 * * MON-FRI", "every hour from 09:00 to 17:00 on Monday to Friday"),
        ("*/15 9-17 * * 1-5", "every 15 minutes from 09:00 to 17:59 on Monday to Friday"),
        ("0,15,30,45 2 * * *", "at 02:00, 02:15, 02:30 and 02:45 every day"),
        ("15,45 8,20 * * SAT,SUN", "at 08:15, 08:45, 20:15 and 20:45 on Saturday and Sunday"),
        ("0 0 * * 0,6", "at 00:00 on Saturday and Sunday"),
        ("@yearly", "at 00:00 on 1 January"),
        ("0 0 29 2 *", "at 00:00 on 29 February"),
        ("30 2 1 * *", "at 02:30 on day 1 of the month"),
        ("0 0 1,15 * *", "at 00:00 on days 1 and 15 of the month"),
        ("0 0 1 * MON", "at 00:00 on day 1 of the month and on Monday"),
        ("0 0 */2 * MON", "at 00:00 on every 2nd day of the month when it is a Monday"),
        ("0 0 * 3-10 *", "at 00:00 every day from March to October"),
        ("0 12 * 1,7 *", "at 12:00 every day in January and July"),
        ("*/10 * * * * *", "every 10 seconds"),
        ("5 * * * * *", "at second 5 of every minute"),
        ("0 30 2 * * *", "at 02:30 every day"),
        ("15 30 2 * * *", "at 02:30:15 every day"),
    ],
)
def test_words(expression: str, words: str) -> None:
    rule = parse(expression)
    assert rule is not None
    assert describe(rule, "Europe/Berlin") == f"{words}, Europe/Berlin"


@pytest.mark.parametrize(
    "expression", ["", "* * * *", "0 0 L * *", "0 0 ? * *", "5/15 * * * *", "61 * * * *", "@reboot"]
)
def test_what_it_cannot_read_is_none(expression: str) -> None:
    assert parse(expression) is None


def test_days_match_either_field_unless_one_starts_with_a_star() -> None:
    either = parse("0 0 1 * MON")
    both = parse("0 0 */2 * MON")
    assert either is not None
    assert both is not None
    monday_the_2nd, thursday_the_1st, monday_the_9th = date(2026, 3, 2), date(2026, 1, 1), date(2026, 3, 9)
    assert either.matches_day(monday_the_2nd)
    assert either.matches_day(thursday_the_1st)
    assert both.matches_day(monday_the_9th)
    assert not both.matches_day(monday_the_2nd)
    sunday = parse("0 0 * * 7")
    assert sunday is not None
    assert sunday.weekday.values == (0,)


@pytest.mark.parametrize(
    ("expression", "wildcard"),
    [
        ("30 2 * * *", False),
        ("0 0-23 * * *", False),
        ("0 * * * *", True),
        ("*/20 1 * * *", True),
        ("@daily", False),
        ("*/10 30 2 * * *", True),
    ],
)
def test_debian_wildcard_rule(expression: str, wildcard: bool) -> None:
    rule = parse(expression)
    assert rule is not None
    assert rule.wildcard is wildcard


def test_transitions_and_the_rule_times_they_skip_or_repeat() -> None:
    berlin = transitions(ZoneInfo("Europe/Berlin"), datetime(2026, 1, 1, tzinfo=UTC))
    assert [(t.instant, t.forward) for t in berlin] == [
        (datetime(2026, 3, 29, 1, tzinfo=UTC), True),
        (datetime(2026, 10, 25, 1, tzinfo=UTC), False),
    ]
    assert berlin[0].wall_span() == (datetime(2026, 3, 29, 2), datetime(2026, 3, 29, 3))
    lord_howe = transitions(ZoneInfo("Australia/Lord_Howe"), datetime(2026, 6, 1, tzinfo=UTC))
    assert lord_howe[0].wall_span() == (datetime(2026, 10, 4, 2), datetime(2026, 10, 4, 2, 30))
    assert transitions(ZoneInfo("Asia/Kolkata"), datetime(2026, 1, 1, tzinfo=UTC)) == []

    every_20 = parse("*/20 2 * * *")
    sundays = parse("30 2 * * SUN")
    mondays = parse("30 2 * * MON")
    assert every_20 is not None
    assert sundays is not None
    assert mondays is not None
    start, end = berlin[1].wall_span()
    assert [t.minute for t in rule_times_in(every_20, start, end)] == [0, 20, 40]
    assert rule_times_in(sundays, start, end) == [datetime(2026, 10, 25, 2, 30)]
    assert rule_times_in(mondays, start, end) == []
