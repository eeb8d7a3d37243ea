"""``hetuflow cron EXPR``: the next fire times of a cron expression, from the server's preview (so the same
rules as real schedules), and the rule in plain words with what daylight saving time does to it.

For the first spring-forward and fall-back day of the zone after ``--from``, when the rule names a time in
the skipped or repeated span, the server's preview around that instant says what really happens, and that
is what the words report: a skipped 02:30 that runs at the jump (03:00), a repeated 02:30 that runs once,
in the first pass, or a wildcard rule that runs in both passes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from hetuflow_core.cli._context import Context
from hetuflow_core.cli._cronwords import CronRule, describe, parse
from hetuflow_core.cli._dst import Transition, rule_times_in, transitions
from hetuflow_core.cli._errors import Usage
from hetuflow_core.cli._output import output_option, print_json
from hetuflow_core.client import Client
from hetuflow_core.enums import ScheduleKind
from hetuflow_core.schedule import SchedulePreviewRequest

__all__ = ["cron", "dst_notes"]

_SECOND: Final = timedelta(seconds=1)
_MAX_PREVIEW: Final = 1000
_MAX_LISTED: Final = 3


def _preview(client: Client, expression: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    request = SchedulePreviewRequest(
        kind=ScheduleKind.CRON, cron_expression=expression, timezone=timezone, from_=after, count=count
    )
    return [datetime.fromisoformat(fire) for fire in client.preview_schedule(request).fire_times]


def _times(times: list[datetime]) -> str:
    texts = [f"{t:%H:%M:%S}" if t.second else f"{t:%H:%M}" for t in times]
    if len(texts) > _MAX_LISTED:
        return f"the {len(texts)} times from {texts[0]} to {texts[-1]}"
    return ", ".join(texts)


def _day(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b %Y}"


def _spring(
    client: Client, expression: str, zone: ZoneInfo, rule: CronRule, change: Transition
) -> str | None:
    start, end = change.wall_span()
    times = rule_times_in(rule, start, end)
    if not times:
        return None
    fires = _preview(client, expression, str(zone.key), change.instant - _SECOND, 1)
    jump = change.instant.astimezone(zone)
    own_time = jump.replace(tzinfo=None) in rule_times_in(rule, jump.replace(tzinfo=None), end + change.shift)
    missing = "does not exist" if len(times) == 1 else "do not exist"
    if fires and fires[0] == change.instant and not (own_time and rule.wildcard):
        return (
            f"on the spring-forward day ({_day(start)}) at {jump:%H:%M} {jump.tzname()} "
            f"({_times(times)} {missing} that day)"
        )
    return f"on the spring-forward day ({_day(start)}) not at {_times(times)} (skipped: {missing} that day)"


def _fall(client: Client, expression: str, zone: ZoneInfo, rule: CronRule, change: Transition) -> str | None:
    start, end = change.wall_span()
    times = rule_times_in(rule, start, end)
    if not times:
        return None
    first_pass = change.instant - change.shift
    count = min(_MAX_PREVIEW, 2 * len(times) + 1)
    fires = _preview(client, expression, str(zone.key), first_pass - _SECOND, count)
    in_first = [f for f in fires if first_pass <= f < change.instant]
    in_second = [f for f in fires if change.instant <= f < change.instant + change.shift]
    before = (change.instant - _SECOND).astimezone(zone).tzname()
    after = change.instant.astimezone(zone).tzname()
    if in_first and not in_second:
        return f"on the fall-back day ({_day(start)}) once, at the first {_times(times)} ({before})"
    if in_first and in_second:
        return (
            f"on the fall-back day ({_day(start)}) in both passes of {start:%H:%M}-{end:%H:%M} "
            f"({before}, then {after})"
        )
    return None


def dst_notes(client: Client, expression: str, timezone: str, after: datetime) -> list[str]:
    """What the zone's next clock changes do to the rule, from the server's fire times around them."""
    rule = parse(expression)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return []
    changes = transitions(zone, after)
    if rule is None or not changes:
        return []
    notes = []
    spring = next((change for change in changes if change.forward), None)
    fall = next((change for change in changes if not change.forward), None)
    for change, word in ((spring, _spring), (fall, _fall)):
        note = word(client, expression, zone, rule, change) if change is not None else None
        if note is not None:
            notes.append(note)
    return notes or ["daylight saving time does not move it"]


def _start(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise Usage(f"--from {text!r}: not an RFC 3339 time") from None
    if start.utcoffset() is None:
        raise Usage(f"--from {text!r}: needs a UTC offset, e.g. {text}+00:00")
    return start


@click.command()
@click.argument("expression")
@click.option("--tz", "timezone", default="UTC", show_default=True, metavar="ZONE", help="IANA time zone")
@click.option("--count", type=click.IntRange(1, _MAX_PREVIEW), default=5, show_default=True)
@click.option(
    "--from", "start", metavar="TIME", help="list fire times after this RFC 3339 time (default: now)"
)
@output_option
@click.pass_obj
def cron(
    context: Context, expression: str, timezone: str, count: int, start: str | None, output: str
) -> None:
    """The next fire times of a cron EXPRESSION (the server's preview) and the rule in plain words."""
    after = _start(start)
    fires = context.client.preview_schedule(
        SchedulePreviewRequest(
            kind=ScheduleKind.CRON, cron_expression=expression, timezone=timezone, from_=after, count=count
        )
    ).fire_times
    rule = parse(expression)
    words = describe(rule, timezone) if rule is not None else f'"{expression}", {timezone}'
    notes = dst_notes(context.client, expression, timezone, after)
    if output == "json":
        print_json(context, {"description": words, "dst": notes, "fire_times": fires})
        return
    context.out.print("; ".join([words, *notes]), markup=False)
    for fire in fires:
        context.out.print(fire, markup=False)
