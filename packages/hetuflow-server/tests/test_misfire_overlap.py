"""Overlap policy decisions (pure): allow, forbid and replace for the due slots of one schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetuflow_core.enums import ConcurrencyPolicy
from hetuflow_core.ids import uuid7
from hetuflow_server.triggers.overlap import RunRef, plan_overlap

T0 = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


def ref(second: int) -> RunRef:
    return RunRef(task_id=uuid7(), scheduled_at=T0 + timedelta(seconds=second))


def test_allow_runs_everything_and_cancels_nothing() -> None:
    due, live = [ref(3), ref(4)], [ref(1)]
    plan = plan_overlap(ConcurrencyPolicy.ALLOW, due, live)
    assert (plan.run, plan.skip, plan.cancel) == (due, [], [])


@pytest.mark.parametrize("policy", list(ConcurrencyPolicy))
def test_nothing_due_nothing_to_do(policy: ConcurrencyPolicy) -> None:
    plan = plan_overlap(policy, [], [ref(1)])
    assert (plan.run, plan.skip, plan.cancel) == ([], [], [])


@pytest.mark.parametrize("policy", [ConcurrencyPolicy.FORBID, ConcurrencyPolicy.REPLACE])
def test_a_lone_due_slot_without_live_runs_runs(policy: ConcurrencyPolicy) -> None:
    due = ref(3)
    plan = plan_overlap(policy, [due], [])
    assert (plan.run, plan.skip, plan.cancel) == ([due], [], [])


def test_forbid_skips_a_slot_while_a_run_goes_on() -> None:
    older, running, due = ref(1), ref(2), ref(3)
    plan = plan_overlap(ConcurrencyPolicy.FORBID, [due], [running, older])
    assert plan.run == []
    assert plan.cancel == []
    (skip,) = plan.skip
    assert (skip.task_id, skip.blocker, skip.replaced) == (due.task_id, older, False)
    assert skip.detail == (
        f"the run of the slot at {older.scheduled_at.isoformat()} (task {older.task_id}) was still going "
        "(concurrency forbid)"
    )


def test_forbid_with_several_due_slots_runs_the_first_only() -> None:
    first, second, third = ref(1), ref(2), ref(3)
    plan = plan_overlap(ConcurrencyPolicy.FORBID, [third, first, second], [])
    assert plan.run == [first]
    assert [(s.task_id, s.blocker) for s in plan.skip] == [(second.task_id, first), (third.task_id, first)]
    assert plan.cancel == []


def test_replace_cancels_live_runs_and_runs_the_new_slot() -> None:
    running, due = ref(1), ref(2)
    plan = plan_overlap(ConcurrencyPolicy.REPLACE, [due], [running])
    assert (plan.run, plan.skip, plan.cancel) == ([due], [], [running])


def test_replace_with_several_due_slots_keeps_the_latest() -> None:
    running, a, b, c = ref(0), ref(1), ref(2), ref(3)
    plan = plan_overlap(ConcurrencyPolicy.REPLACE, [b, c, a], [running])
    assert plan.run == [c]
    assert [(s.task_id, s.replaced, s.blocker) for s in plan.skip] == [
        (a.task_id, True, c),
        (b.task_id, True, c),
    ]
    assert plan.skip[0].detail == f"replaced by the slot at {c.scheduled_at.isoformat()} before it started"
    assert plan.cancel == [running]


@given(
    policy=st.sampled_from(list(ConcurrencyPolicy)),
    due_secs=st.lists(st.integers(0, 100), unique=True, max_size=8),
    live_secs=st.lists(st.integers(-100, -1), unique=True, max_size=3),
    seed=st.integers(0, 1000),
)
def test_every_due_slot_gets_exactly_one_verdict(
    policy: ConcurrencyPolicy, due_secs: list[int], live_secs: list[int], seed: int
) -> None:
    due = [ref(s) for s in due_secs]
    live = [ref(s) for s in live_secs]
    shuffled = due[:]
    random.Random(seed).shuffle(shuffled)
    plan = plan_overlap(policy, shuffled, live)
    verdicts = [r.task_id for r in plan.run] + [s.task_id for s in plan.skip]
    assert sorted(verdicts) == sorted(r.task_id for r in due)
    if policy is ConcurrencyPolicy.ALLOW:
        assert len(plan.run) == len(due)
    else:
        # Never two runs of the schedule at once: at most one new run, and it never joins a live one.
        assert len(plan.run) <= 1
        if policy is ConcurrencyPolicy.FORBID and live:
            assert plan.run == []
        if policy is ConcurrencyPolicy.REPLACE and due:
            assert plan.cancel == live
            assert plan.run == [max(due, key=lambda r: r.scheduled_at)]
    # The plan does not depend on the order the slots were handed over in.
    assert plan == plan_overlap(policy, sorted(due, key=lambda r: r.scheduled_at), live)
