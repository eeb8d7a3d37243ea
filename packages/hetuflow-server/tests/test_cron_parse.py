"""Cron syntax: what parses to which values, the Vixie day rule, the wildcard rule, and every refusal."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from hetuflow_server.errors import InvalidInput
from hetuflow_server.triggers import CronTrigger, InvalidSchedule, fire_times, parse_cron


def test_five_fields_have_seconds_zero() -> None:
    expression = parse_cron("*/15 9-17 * * MON-FRI")
    assert expression.seconds == (0,)
    assert expression.minutes == (0, 15, 30, 45)
    assert expression.hours == tuple(range(9, 18))
    assert expression.weekdays == (1, 2, 3, 4, 5)
    assert expression.days == tuple(range(1, 32))
    assert expression.months == tuple(range(1, 13))


def test_six_fields_lead_with_seconds() -> None:
    expression = parse_cron("10-50/20 0 12 * * *")
    assert expression.seconds == (10, 30, 50)
    assert expression.minutes == (0,)
    assert expression.hours == (12,)


@pytest.mark.parametrize(
    ("text", "months", "weekdays"),
    [
        ("0 0 * jan,Mar,DEC *", (1, 3, 12), tuple(range(7))),
        ("0 0 * FEB-apr *", (2, 3, 4), tuple(range(7))),
        ("0 0 * * sun", tuple(range(1, 13)), (0,)),
        ("0 0 * * 7", tuple(range(1, 13)), (0,)),
        ("0 0 * * 0,7", tuple(range(1, 13)), (0,)),
        ("0 0 * * 5-7", tuple(range(1, 13)), (0, 5, 6)),
        ("0 0 * * Mon-Fri/2", tuple(range(1, 13)), (1, 3, 5)),
        ("0 0 * */3 *", (1, 4, 7, 10), tuple(range(7))),
    ],
)
def test_names_are_case_insensitive_and_sunday_is_0_or_7(
    text: str, months: tuple[int, ...], weekdays: tuple[int, ...]
) -> None:
    expression = parse_cron(text)
    assert expression.months == months
    assert expression.weekdays == weekdays


@pytest.mark.parametrize(
    ("alias", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_aliases(alias: str, equivalent: str) -> None:
    parsed, expected = parse_cron(alias), parse_cron(equivalent)
    assert parsed.source == alias
    for name in ("seconds", "minutes", "hours", "days", "months", "weekdays", "day_or", "wildcard"):
        assert getattr(parsed, name) == getattr(expected, name)


def test_steps_lists_and_overlaps() -> None:
    assert parse_cron("1,2,1-3,*/30 * * * *").minutes == (0, 1, 2, 3, 30)
    assert parse_cron("5-7/10 * * * *").minutes == (5,)
    assert parse_cron("* * 31 * *").days == (31,)


@pytest.mark.parametrize(
    ("text", "wildcard"),
    [
        ("* * * * *", True),
        ("*/5 * * * *", True),
        ("0 * * * *", True),
        ("0 */2 * * *", True),
        ("*/10 1 * * *", True),
        ("@hourly", True),
        ("0 0-23 * * *", False),
        ("0 0-23/2 * * *", False),
        ("30 1 * * *", False),
        ("@daily", False),
        ("0-59 1 * * *", False),
        ("* 30 1 * * *", True),
        ("*/10 30 1 * * *", True),
        ("0 30 1 * * *", False),
        ("0 * 1 * * *", True),
    ],
)
def test_debian_wildcard_rule(text: str, wildcard: bool) -> None:
    """A job is a wildcard job when its seconds, minute or hour field starts with '*'."""
    assert parse_cron(text).wildcard is wildcard


def test_vixie_day_of_month_or_day_of_week() -> None:
    after = datetime(2025, 1, 31, tzinfo=UTC)
    # Both restricted: either matches (the 1st, and every Monday).
    both = CronTrigger("0 0 1 * MON")
    assert both.expression.day_or
    assert [f.day for f in fire_times(both, after, count=4)] == [1, 3, 10, 17]
    # A field starting with '*' counts as unrestricted, even '*/2': then both must match.
    odd_mondays = CronTrigger("0 0 */2 * MON")
    assert not odd_mondays.expression.day_or
    assert [f.day for f in fire_times(odd_mondays, after, count=3)] == [3, 17, 3]
    assert [f.day for f in fire_times(CronTrigger("0 0 * * MON"), after, count=2)] == [3, 10]
    assert [f.day for f in fire_times(CronTrigger("0 0 1 * *"), after, count=2)] == [1, 1]


def test_matches_reads_wall_clock_fields() -> None:
    expression = parse_cron("30 2 29 2 *")
    assert expression.matches(datetime(2028, 2, 29, 2, 30))
    assert not expression.matches(datetime(2028, 2, 29, 2, 31))
    assert not expression.matches(datetime(2028, 2, 28, 2, 30))


def test_equal_expressions_compare_and_hash_equal() -> None:
    assert parse_cron("0 0 * * *") == parse_cron("0 0 * * *")
    assert hash(parse_cron("0 0 * * *")) == hash(parse_cron("0 0 * * *"))
    assert str(parse_cron("  @daily ")) == "@daily"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with leading seconds)"),
        ("   ", "got 0"),
        ("* * * *", "got 4"),
        ("* * * * * * *", "got 7"),
        ("0 25 * * *", "field 'hour' value 25 out of range 0-23"),
        ("60 * * * *", "field 'minute' value 60 out of range 0-59"),
        ("60 * * * * *", "field 'second' value 60 out of range 0-59"),
        ("0 0 0 * *", "field 'day-of-month' value 0 out of range 1-31"),
        ("0 0 32 * *", "field 'day-of-month' value 32 out of range 1-31"),
        ("0 0 * 13 *", "field 'month' value 13 out of range 1-12"),
        ("0 0 * * 8", "field 'day-of-week' value 8 out of range 0-7"),
        (
            "0 0 * * MONDAY",
            "field 'day-of-week' value 'MONDAY' is neither a number nor a name like SUN, MON, TUE",
        ),
        (
            "0 0 * JANUARY *",
            "field 'month' value 'JANUARY' is neither a number nor a name like JAN, FEB, MAR",
        ),
        ("0 x * * *", "field 'hour' value 'x' is not a number"),
        ("0 MON * * *", "field 'hour' value 'MON' is not a number"),
        ("0 -1 * * *", "field 'hour' value '' is not a number"),
        ("0 1, * * *", "field 'hour' has an empty list item in '1,'"),
        ("*/0 * * * *", "field 'minute' step '0' in '*/0' is not a positive number"),
        ("*/x * * * *", "field 'minute' step 'x' in '*/x' is not a positive number"),
        ("*/ * * * *", "field 'minute' step '' in '*/' is not a positive number"),
        ("5/15 * * * *", "field 'minute' step in '5/15' needs a range or '*' (write '5-59/15')"),
        ("50-10 * * * *", "field 'minute' range '50-10' runs backwards (cron ranges do not wrap)"),
        ("0 0 * * FRI-MON", "field 'day-of-week' range 'FRI-MON' runs backwards (cron ranges do not wrap)"),
        ("0 0 L * *", "field 'day-of-month' value 'L' is not supported"),
        ("0 0 ? * MON", "field 'day-of-month' value '?' is not supported"),
        ("0 0 * * MON#2", "field 'day-of-week' value 'MON#2' is not supported"),
        ("0 0 15W * *", "field 'day-of-month' value '15W' is not supported"),
        ("@reboot", "unknown alias '@reboot'; expected one of @yearly, @annually, @monthly"),
        ("@every 5m", "unknown alias '@every 5m'"),
        ("0 \u0661 * * *", "field 'hour' value '\u0661' is not a number"),  # an Arabic-Indic digit
    ],
)
def test_invalid_expressions_name_the_field_and_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_cron(text)
    assert caught.value.field == "cron_expression"
    assert reason in caught.value.reason
    assert str(caught.value) == f"cron_expression: {caught.value.reason}"


def test_invalid_schedule_is_a_value_error_and_an_api_error() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_cron("0 25 * * *")
    error = caught.value
    assert isinstance(error, ValueError)
    assert isinstance(error, InvalidInput)
    assert error.status == 422
    assert [(p.path, p.message) for p in error.fields] == [
        ("$.cron_expression", "field 'hour' value 25 out of range 0-23")
    ]
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.reason) == (error.field, error.reason)


def test_non_string_expression_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="must be a string, not int"):
        parse_cron(5)  # type: ignore[arg-type]
