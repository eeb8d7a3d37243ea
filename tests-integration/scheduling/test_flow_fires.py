"""Fires of flow schedules against a real PostgreSQL, the generator driven by a clock of the test's own: a
due slot starts one run (recorded ``ran`` with the run) and a future one nothing; the flow's concurrency
applies to the schedule's runs still going (``forbid`` records ``skipped_overlap``, ``replace`` cancels the
old run); the misfire policy judges slots that could not fire in time; a ``once`` schedule expires after its
run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from schedulingfixtures import Kit, slot_records

from hetuflow_core.enums import (
    ConcurrencyPolicy,
    FlowRunStatus,
    MisfirePolicy,
    ScheduleKind,
    ScheduleStatus,
    SlotOutcome,
    TaskStatus,
)
from hetuflow_core.flow import Flow, FlowCreate, FlowRun, FlowStep
from hetuflow_core.ids import uuid7
from hetuflow_core.schedule import Schedule, ScheduleCreate

pytestmark = pytest.mark.usefixtures("quiet_schedules")


async def _flow(kit: Kit, concurrency: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW) -> Flow:
    job = await kit.make_job()
    steps = [FlowStep(name="a", job_id=job.id), FlowStep(name="b", job_id=job.id, depends_on=["a"])]
    return await kit.services.flows.create(
        FlowCreate(name=f"fired-{uuid7().hex[-8:]}", steps=steps, concurrency=concurrency)
    )


async def _every_ten_secs(kit: Kit, flow: Flow, start: datetime, **fields: Any) -> Schedule:
    create = ScheduleCreate(
        flow_id=flow.id, kind=ScheduleKind.INTERVAL, interval_secs=10, start_time=start, **fields
    )
    return await kit.services.schedules.create(create)


async def _runs(kit: Kit, flow: Flow) -> list[FlowRun]:
    return list((await kit.services.flows.list_runs(flow.id, limit=100)).items)


def _start() -> datetime:
    return datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + 2, UTC)


async def test_a_due_slot_starts_one_run_and_names_it_in_the_slot_record(kit: Kit) -> None:
    flow = await _flow(kit)
    t0 = _start()
    schedule = await _every_ten_secs(kit, flow, t0, parameters={"p": 1})
    now = t0 - timedelta(seconds=1)
    generator = await kit.leading_generator(clock=lambda: now)
    report = await generator.cycle()
    assert await _runs(kit, flow) == []  # nothing is due yet: a flow's slot is never fired ahead
    assert report.next_flow_fire_at == t0
    now = t0 + timedelta(seconds=0.2)
    report = await generator.cycle()
    assert report.tasks == 1
    assert report.next_flow_fire_at == t0 + timedelta(seconds=10)
    [run] = await _runs(kit, flow)
    assert (run.schedule_id, run.scheduled_at, run.parameters) == (schedule.id, t0, {"p": 1})
    assert [(step.name, step.status) for step in run.steps] == [
        ("a", TaskStatus.PENDING),
        ("b", TaskStatus.PENDING),
    ]
    [record] = await slot_records(kit.db, schedule.id)
    assert (record.scheduled_at, record.outcome, record.flow_run_id) == (t0, SlotOutcome.RAN, run.id)
    await generator.cycle()  # the same slot never fires twice
    assert len(await _runs(kit, flow)) == 1
    stored = await kit.services.schedules.get(schedule.id)
    assert stored.fire_count == 1


async def test_forbid_skips_a_slot_while_the_previous_run_goes(kit: Kit) -> None:
    flow = await _flow(kit, ConcurrencyPolicy.FORBID)
    t0 = _start()
    schedule = await _every_ten_secs(kit, flow, t0)
    now = t0 + timedelta(seconds=0.2)
    generator = await kit.leading_generator(clock=lambda: now)
    await generator.cycle()
    [first] = await _runs(kit, flow)
    now = t0 + timedelta(seconds=10.2)
    await generator.cycle()
    assert [run.id for run in await _runs(kit, flow)] == [first.id]
    records = {record.scheduled_at: record for record in await slot_records(kit.db, schedule.id)}
    skipped = records[t0 + timedelta(seconds=10)]
    assert (skipped.outcome, skipped.flow_run_id) == (SlotOutcome.SKIPPED_OVERLAP, None)
    assert str(first.id) in (skipped.detail or "")
    # Once the run ended, the next slot starts a run again.
    await kit.services.flows.cancel_run(flow.id, first.id)
    now = t0 + timedelta(seconds=20.2)
    await generator.cycle()
    runs = await _runs(kit, flow)
    assert [run.scheduled_at for run in runs] == [t0, t0 + timedelta(seconds=20)]


async def test_replace_cancels_the_running_run_for_the_new_slot(kit: Kit) -> None:
    flow = await _flow(kit, ConcurrencyPolicy.REPLACE)
    t0 = _start()
    await _every_ten_secs(kit, flow, t0)
    now = t0 + timedelta(seconds=0.2)
    generator = await kit.leading_generator(clock=lambda: now)
    await generator.cycle()
    now = t0 + timedelta(seconds=10.2)
    await generator.cycle()
    old, new = await _runs(kit, flow)
    assert (old.status, new.status) == (FlowRunStatus.CANCELLED, FlowRunStatus.PENDING)
    assert {step.status for step in old.steps} == {TaskStatus.SKIPPED}
    assert "replaced by the run of the slot at" in (old.steps[0].error or "")


@pytest.mark.parametrize(
    ("policy", "started"),
    [(MisfirePolicy.SKIP, []), (MisfirePolicy.RUN_ONCE, [30]), (MisfirePolicy.RUN_ALL, [0, 10, 20, 30])],
)
async def test_slots_that_could_not_fire_in_time_follow_the_misfire_policy(
    kit: Kit, policy: MisfirePolicy, started: list[int]
) -> None:
    flow = await _flow(kit)
    t0 = _start()
    schedule = await _every_ten_secs(kit, flow, t0, misfire_policy=policy, misfire_grace_secs=0)
    now = t0 + timedelta(seconds=35)  # the scheduler comes back long after four slots
    await (await kit.leading_generator(clock=lambda: now)).cycle()
    runs = await _runs(kit, flow)
    assert sorted(run.scheduled_at for run in runs) == [t0 + timedelta(seconds=s) for s in started]
    records = {record.scheduled_at: record.outcome for record in await slot_records(kit.db, schedule.id)}
    for offset in (0, 10, 20, 30):
        wanted = SlotOutcome.RAN if offset in started else SlotOutcome.MISSED
        assert records[t0 + timedelta(seconds=offset)] is wanted, (policy, records)


async def test_a_once_schedule_expires_after_its_run_and_a_disabled_flow_fires_nothing(kit: Kit) -> None:
    flow = await _flow(kit)
    t0 = _start()
    once = await kit.services.schedules.create(
        ScheduleCreate(flow_id=flow.id, kind=ScheduleKind.ONCE, start_time=t0)
    )
    paused = await _flow(kit)
    await _every_ten_secs(kit, paused, t0)
    await kit.services.flows.disable(paused.id)
    now = t0 + timedelta(seconds=0.2)
    await (await kit.leading_generator(clock=lambda: now)).cycle()
    assert len(await _runs(kit, flow)) == 1
    assert (await kit.services.schedules.get(once.id)).status is ScheduleStatus.EXPIRED
    assert await _runs(kit, paused) == []
