"""Misfire policy decisions (pure): which slots only wait for an agent, which are late, which late slots run
under skip, run_once and run_all, grace, slack and the start deadline.

The generator decides for a whole gap at once (``split_slots``, streaming through ``LateSlots``); the
dispatcher decides one late task at a time from how many later late slots exist (``MisfireRule.runs_late``).
The property tests prove the two agree for every policy, grace and gap, which is what lets either of them see
a slot first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetuflow_core.enums import MisfirePolicy
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS, LateSlots, MisfireRule, Verdict, split_slots

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


def seconds_ago(*offsets: float) -> list[datetime]:
    return [NOW - timedelta(seconds=offset) for offset in offsets]


def every_second(start: float, stop: float) -> list[datetime]:
    """Slots one second apart from NOW+start (inclusive) to NOW+stop (exclusive), oldest first."""
    return [NOW + timedelta(seconds=offset) for offset in range(int(start), int(stop))]


# --- the rule


@pytest.mark.parametrize(
    ("policy", "max_runs", "keep"),
    [
        (MisfirePolicy.SKIP, 100, 0),
        (MisfirePolicy.RUN_ONCE, 100, 1),
        (MisfirePolicy.RUN_ALL, 100, 100),
        (MisfirePolicy.RUN_ALL, 3, 3),
        (MisfirePolicy.RUN_ONCE, 3, 1),
    ],
)
def test_keep_per_policy(policy: MisfirePolicy, max_runs: int, keep: int) -> None:
    assert MisfireRule(policy=policy, max_runs=max_runs).keep == keep


def test_default_rule_runs_the_latest_late_slot_after_a_minute_of_grace() -> None:
    rule = MisfireRule()
    assert (rule.policy, rule.grace_secs, rule.keep) == (MisfirePolicy.RUN_ONCE, 60.0, 1)
    assert (rule.start_deadline_secs, rule.slack_secs) == (None, MISFIRE_SLACK_SECS)


def test_late_means_older_than_grace_plus_slack() -> None:
    rule = MisfireRule(grace_secs=30)
    edge = NOW - timedelta(seconds=30 + MISFIRE_SLACK_SECS)
    assert rule.cutoff(NOW) == edge
    assert rule.is_late(edge - timedelta(microseconds=1), NOW)
    assert not rule.is_late(edge, NOW)  # exactly at the boundary still runs normally
    assert not rule.is_late(NOW - timedelta(seconds=29), NOW)  # within grace
    assert not rule.is_late(NOW + timedelta(seconds=5), NOW)  # not even due


def test_slack_forgives_the_schedulers_own_latency() -> None:
    rule = MisfireRule(grace_secs=0)  # no grace at all
    assert not rule.is_late(NOW - timedelta(seconds=MISFIRE_SLACK_SECS / 2), NOW)
    assert rule.is_late(NOW - timedelta(seconds=MISFIRE_SLACK_SECS * 2), NOW)


@pytest.mark.parametrize(
    ("policy", "later_late", "runs"),
    [
        (MisfirePolicy.SKIP, 0, False),
        (MisfirePolicy.RUN_ONCE, 0, True),
        (MisfirePolicy.RUN_ONCE, 1, False),
        (MisfirePolicy.RUN_ALL, 2, True),
        (MisfirePolicy.RUN_ALL, 3, False),
    ],
)
def test_runs_late_counts_later_late_slots(policy: MisfirePolicy, later_late: int, runs: bool) -> None:
    assert MisfireRule(policy=policy, max_runs=3).runs_late(later_late) is runs


def test_missed_detail_says_how_late_and_which_policy() -> None:
    slot = NOW - timedelta(seconds=12.3)
    skip = MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=0).missed_detail(slot, NOW)
    assert skip == "12.3 s late, grace 0 s: misfire policy skip"
    once = MisfireRule(policy=MisfirePolicy.RUN_ONCE, grace_secs=2).missed_detail(slot, NOW)
    assert once == "12.3 s late, grace 2 s: misfire policy run_once, the latest late slot runs"
    many = MisfireRule(policy=MisfirePolicy.RUN_ALL, max_runs=5).missed_detail(slot, NOW)
    assert many.endswith("misfire policy run_all, the latest 5 late slots run")


# --- waiting for an agent is not a misfire; an outage is

HOUR_AGO = NOW - timedelta(hours=1)
"""The scheduler has been up since then, in the tests below, unless they say otherwise."""


def test_a_slot_planned_and_watched_in_time_waits_however_late() -> None:
    rule = MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=0)
    slot = NOW - timedelta(minutes=10)  # an agent has been busy for ten minutes
    planned = slot - timedelta(minutes=5)  # the generator made its task ahead of time
    assert rule.is_late(slot, NOW)
    assert rule.judge(slot, planned_at=planned, up_since=HOUR_AGO, now=NOW) is Verdict.WAITING


def test_a_slot_whose_time_fell_in_an_outage_is_late() -> None:
    rule = MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=0)
    slot = NOW - timedelta(seconds=30)
    planned = slot - timedelta(minutes=5)  # planned before the outage, as the horizon does
    back = NOW - timedelta(seconds=5)  # every server was down from before the slot until then
    assert rule.judge(slot, planned_at=planned, up_since=back, now=NOW) is Verdict.LATE
    # A slot due after the restart only waits, even when the agents are busy past its grace.
    later = back + timedelta(seconds=1)
    assert rule.judge(later, planned_at=planned, up_since=back, now=NOW) is Verdict.WAITING


def test_a_slot_the_scheduler_came_back_for_within_grace_and_slack_only_waits() -> None:
    rule = MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=0)
    back = NOW - timedelta(seconds=20)  # every server was down until then
    planned = back - timedelta(minutes=5)  # planned before the outage, as the horizon does
    within = back - timedelta(seconds=MISFIRE_SLACK_SECS / 2)  # due just before the scheduler was back
    # However late the first dispatch after the restart looks at it (agents reconnecting, a backlog of
    # dispatch rounds), the scheduler was back in time for it: it waits for an agent.
    assert rule.judge(within, planned_at=planned, up_since=back, now=NOW) is Verdict.WAITING
    beyond = back - timedelta(seconds=MISFIRE_SLACK_SECS * 2)
    assert rule.judge(beyond, planned_at=planned, up_since=back, now=NOW) is Verdict.LATE
    assert rule.unwatched_before(back) == back - timedelta(seconds=MISFIRE_SLACK_SECS)


@given(
    grace=st.sampled_from([0.0, 2.0, 60.0]),
    slot_ms=st.integers(min_value=-120_000, max_value=0),
    first_ms=st.integers(min_value=0, max_value=120_000),
    again_ms=st.integers(min_value=0, max_value=120_000),
)
def test_whether_the_policy_judges_a_slot_does_not_depend_on_when_it_is_dispatched(
    grace: float, slot_ms: int, first_ms: int, again_ms: int
) -> None:
    # A slot planned before an outage that ended at `back`: the policy judges it or it runs normally, and
    # which of the two does not depend on how long after the restart a dispatch round first looks at it.
    rule = MisfireRule(policy=MisfirePolicy.RUN_ONCE, grace_secs=grace)
    back = NOW
    slot = back + timedelta(milliseconds=slot_ms)
    planned = slot - timedelta(minutes=10)

    def judged_at(after_ms: int) -> bool:
        now = back + timedelta(milliseconds=after_ms)
        return rule.judge(slot, planned_at=planned, up_since=back, now=now) is Verdict.LATE

    assert judged_at(first_ms) == judged_at(again_ms) == (slot < rule.unwatched_before(back))


def test_a_slot_planned_after_it_was_late_is_late() -> None:
    rule = MisfireRule(policy=MisfirePolicy.RUN_ONCE, grace_secs=10)
    slot = NOW - timedelta(seconds=40)
    # Planned only when a pause ended (or the cursor was behind the clock), past grace and slack.
    planned = slot + timedelta(seconds=10 + MISFIRE_SLACK_SECS + 1)
    assert rule.judge(slot, planned_at=planned, up_since=HOUR_AGO, now=NOW) is Verdict.LATE
    # Planned within grace (the generator judged it on time): it may wait from then on.
    within = slot + timedelta(seconds=10)
    assert rule.judge(slot, planned_at=within, up_since=HOUR_AGO, now=NOW) is Verdict.WAITING


def test_slots_within_grace_or_not_due_are_on_time_whatever_happened() -> None:
    rule = MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=30)
    for slot in (NOW - timedelta(seconds=20), NOW, NOW + timedelta(seconds=3)):
        assert rule.judge(slot, planned_at=NOW, up_since=NOW, now=NOW) is Verdict.ON_TIME


def test_the_start_deadline_misses_a_waiting_slot_and_a_late_one() -> None:
    rule = MisfireRule(policy=MisfirePolicy.RUN_ALL, grace_secs=0, start_deadline_secs=30)
    edge = NOW - timedelta(seconds=30 + MISFIRE_SLACK_SECS)
    planned = edge - timedelta(minutes=1)
    assert rule.judge(edge, planned_at=planned, up_since=HOUR_AGO, now=NOW) is Verdict.WAITING
    past = edge - timedelta(microseconds=1)
    assert rule.past_deadline(past, NOW)
    assert rule.judge(past, planned_at=planned, up_since=HOUR_AGO, now=NOW) is Verdict.PAST_DEADLINE
    assert rule.judge(past, planned_at=NOW, up_since=NOW, now=NOW) is Verdict.PAST_DEADLINE
    # The deadline applies even within grace: it bounds every start.
    strict = MisfireRule(grace_secs=600, start_deadline_secs=5)
    assert strict.judge(past, planned_at=planned, up_since=HOUR_AGO, now=NOW) is Verdict.PAST_DEADLINE
    assert not MisfireRule().past_deadline(NOW - timedelta(days=30), NOW)  # no deadline: none passes


def test_deadline_detail_says_how_late_and_the_deadline() -> None:
    rule = MisfireRule(start_deadline_secs=5)
    detail = rule.deadline_detail(NOW - timedelta(seconds=7.3), NOW)
    assert detail == "7.3 s late: not started within the start deadline of 5 s"


def test_the_slack_is_the_schedulers_own_and_configurable() -> None:
    slot = NOW - timedelta(seconds=20)
    assert MisfireRule(grace_secs=0).is_late(slot, NOW)
    lenient = MisfireRule(grace_secs=0, slack_secs=30, start_deadline_secs=0)
    assert not lenient.is_late(slot, NOW)
    assert not lenient.past_deadline(slot, NOW)
    assert lenient.cutoff(NOW) == NOW - timedelta(seconds=30)


@given(
    grace=st.sampled_from([0.0, 2.0, 60.0]),
    deadline=st.sampled_from([None, 0.0, 5.0, 120.0]),
    slot_secs=st.integers(min_value=-600, max_value=10),
    planned_secs=st.integers(min_value=-900, max_value=600),
    up_secs=st.integers(min_value=-900, max_value=0),
)
def test_only_slots_the_scheduler_missed_are_left_to_the_policy(
    grace: float, deadline: float | None, slot_secs: int, planned_secs: int, up_secs: int
) -> None:
    rule = MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=grace, start_deadline_secs=deadline)
    slot = NOW + timedelta(seconds=slot_secs)
    planned = slot + timedelta(seconds=planned_secs)
    up_since = NOW + timedelta(seconds=up_secs)
    verdict = rule.judge(slot, planned_at=planned, up_since=up_since, now=NOW)
    tolerance = timedelta(seconds=grace + MISFIRE_SLACK_SECS)
    in_time = planned <= slot + tolerance and up_since <= slot + tolerance
    if rule.past_deadline(slot, NOW):
        assert verdict is Verdict.PAST_DEADLINE
    elif not rule.is_late(slot, NOW):
        assert verdict is Verdict.ON_TIME
    else:
        assert verdict is (Verdict.WAITING if in_time else Verdict.LATE)


# --- a gap of ten seconds, as after a server that was down for ten seconds


def test_skip_runs_nothing_late_and_everything_on_time() -> None:
    slots = every_second(-10, 5)  # ten late slots (with the slack, -1 is not late), then the future
    split = split_slots(MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=0), slots, NOW)
    late = [slot for slot in slots if slot < NOW - timedelta(seconds=MISFIRE_SLACK_SECS)]
    assert split.missed == late
    assert split.run == [slot for slot in slots if slot not in late]


def test_run_once_runs_the_latest_late_slot_once() -> None:
    slots = every_second(-10, 3)
    split = split_slots(MisfireRule(policy=MisfirePolicy.RUN_ONCE, grace_secs=0), slots, NOW)
    cutoff = NOW - timedelta(seconds=MISFIRE_SLACK_SECS)
    late = [slot for slot in slots if slot < cutoff]
    assert split.missed == late[:-1]
    assert split.run == [late[-1], *[slot for slot in slots if slot >= cutoff]]


def test_run_all_runs_the_latest_max_runs_late_slots() -> None:
    slots = every_second(-10, 1)
    split = split_slots(MisfireRule(policy=MisfirePolicy.RUN_ALL, grace_secs=0, max_runs=4), slots, NOW)
    cutoff = NOW - timedelta(seconds=MISFIRE_SLACK_SECS)
    late = [slot for slot in slots if slot < cutoff]
    assert split.missed == late[:-4]
    assert split.run[:4] == late[-4:]
    assert len(split.run) + len(split.missed) == len(slots)


def test_run_all_under_its_bound_runs_every_late_slot() -> None:
    slots = every_second(-10, 0)
    rule = MisfireRule(policy=MisfirePolicy.RUN_ALL, grace_secs=0, max_runs=100)
    split = split_slots(rule, slots, NOW)
    assert (split.run, split.missed) == (slots, [])


def test_slots_within_grace_run_normally_whatever_the_policy() -> None:
    slots = seconds_ago(50, 40, 20, 10, 0)
    for policy in MisfirePolicy:
        split = split_slots(MisfireRule(policy=policy, grace_secs=30), slots, NOW)
        assert split.run[-3:] == seconds_ago(20, 10, 0)
    skip = split_slots(MisfireRule(policy=MisfirePolicy.SKIP, grace_secs=30), slots, NOW)
    assert skip.missed == seconds_ago(50, 40)


def test_no_slots_nothing_to_decide() -> None:
    split = split_slots(MisfireRule(policy=MisfirePolicy.RUN_ONCE), [], NOW)
    assert (split.run, split.missed) == ([], [])


# --- streaming


def test_late_slots_streams_in_bounded_memory() -> None:
    late = LateSlots(2)
    released = [late.add(slot) for slot in seconds_ago(5, 4, 3, 2, 1)]
    assert released == [None, None, *seconds_ago(5, 4, 3)]
    assert late.kept == seconds_ago(2, 1)


def test_late_slots_with_keep_zero_releases_everything() -> None:
    late = LateSlots(0)
    assert [late.add(slot) for slot in seconds_ago(3, 2)] == seconds_ago(3, 2)
    assert late.kept == []


def test_late_slots_refuses_disorder_and_negative_keep() -> None:
    late = LateSlots(3)
    late.add(NOW)
    with pytest.raises(ValueError, match="increasing order"):
        late.add(NOW)
    with pytest.raises(ValueError, match="negative"):
        LateSlots(-1)


# --- the generator's and the dispatcher's decisions agree


policies = st.sampled_from(list(MisfirePolicy))
offsets = st.lists(st.integers(min_value=-5000, max_value=600), unique=True, max_size=80).map(sorted)


@given(
    policy=policies,
    grace=st.sampled_from([0.0, 0.5, 3.0, 60.0]),
    max_runs=st.integers(min_value=1, max_value=12),
    secs=offsets,
)
def test_split_matches_the_per_slot_rule(
    policy: MisfirePolicy, grace: float, max_runs: int, secs: list[int]
) -> None:
    rule = MisfireRule(policy=policy, grace_secs=grace, max_runs=max_runs)
    slots = [NOW + timedelta(seconds=offset) for offset in secs]
    split = split_slots(rule, slots, NOW)
    late = [slot for slot in slots if rule.is_late(slot, NOW)]
    # The dispatcher's view: a late slot runs while fewer than `keep` later late slots exist.
    per_slot = [slot for slot in late if rule.runs_late(sum(1 for other in late if other > slot))]
    assert split.run == per_slot + [slot for slot in slots if not rule.is_late(slot, NOW)]
    assert sorted(split.run + split.missed) == slots
    assert len([slot for slot in split.run if slot in late]) == min(len(late), rule.keep)
    # Whatever runs late is the latest of the late slots.
    assert all(missed < kept for missed in split.missed for kept in split.run)
