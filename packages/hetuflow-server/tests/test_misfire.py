"""Misfire policy decisions (pure): which late slots run under skip, run_once and run_all, and grace.

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
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS, LateSlots, MisfireRule, split_slots

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


def test_default_rule_is_skip_without_grace() -> None:
    rule = MisfireRule()
    assert (rule.policy, rule.grace_secs, rule.keep) == (MisfirePolicy.SKIP, 0.0, 0)


def test_late_means_older_than_grace_plus_slack() -> None:
    rule = MisfireRule(grace_secs=30)
    edge = NOW - timedelta(seconds=30 + MISFIRE_SLACK_SECS)
    assert rule.cutoff(NOW) == edge
    assert rule.is_late(edge - timedelta(microseconds=1), NOW)
    assert not rule.is_late(edge, NOW)  # exactly at the boundary still runs normally
    assert not rule.is_late(NOW - timedelta(seconds=29), NOW)  # within grace
    assert not rule.is_late(NOW + timedelta(seconds=5), NOW)  # not even due


def test_slack_forgives_the_schedulers_own_latency() -> None:
    rule = MisfireRule()  # no grace at all
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
    assert MisfireRule().missed_detail(slot, NOW) == "12.3 s late, grace 0 s: misfire policy skip"
    once = MisfireRule(policy=MisfirePolicy.RUN_ONCE, grace_secs=2).missed_detail(slot, NOW)
    assert once == "12.3 s late, grace 2 s: misfire policy run_once, the latest late slot runs"
    many = MisfireRule(policy=MisfirePolicy.RUN_ALL, max_runs=5).missed_detail(slot, NOW)
    assert many.endswith("misfire policy run_all, the latest 5 late slots run")


# --- a gap of ten seconds, as after a server that was down for ten seconds


def test_skip_runs_nothing_late_and_everything_on_time() -> None:
    slots = every_second(-10, 5)  # ten late slots (with the slack, -1 is not late), then the future
    split = split_slots(MisfireRule(), slots, NOW)
    late = [slot for slot in slots if slot < NOW - timedelta(seconds=MISFIRE_SLACK_SECS)]
    assert split.missed == late
    assert split.run == [slot for slot in slots if slot not in late]


def test_run_once_runs_the_latest_late_slot_once() -> None:
    slots = every_second(-10, 3)
    split = split_slots(MisfireRule(policy=MisfirePolicy.RUN_ONCE), slots, NOW)
    cutoff = NOW - timedelta(seconds=MISFIRE_SLACK_SECS)
    late = [slot for slot in slots if slot < cutoff]
    assert split.missed == late[:-1]
    assert split.run == [late[-1], *[slot for slot in slots if slot >= cutoff]]


def test_run_all_runs_the_latest_max_runs_late_slots() -> None:
    slots = every_second(-10, 1)
    split = split_slots(MisfireRule(policy=MisfirePolicy.RUN_ALL, max_runs=4), slots, NOW)
    cutoff = NOW - timedelta(seconds=MISFIRE_SLACK_SECS)
    late = [slot for slot in slots if slot < cutoff]
    assert split.missed == late[:-4]
    assert split.run[:4] == late[-4:]
    assert len(split.run) + len(split.missed) == len(slots)


def test_run_all_under_its_bound_runs_every_late_slot() -> None:
    slots = every_second(-10, 0)
    split = split_slots(MisfireRule(policy=MisfirePolicy.RUN_ALL, max_runs=100), slots, NOW)
    assert (split.run, split.missed) == (slots, [])


def test_slots_within_grace_run_normally_whatever_the_policy() -> None:
    slots = seconds_ago(50, 40, 20, 10, 0)
    for policy in MisfirePolicy:
        split = split_slots(MisfireRule(policy=policy, grace_secs=30), slots, NOW)
        assert split.run[-3:] == seconds_ago(20, 10, 0)
    skip = split_slots(MisfireRule(grace_secs=30), slots, NOW)
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
