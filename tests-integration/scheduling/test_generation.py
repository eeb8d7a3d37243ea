"""Task generation against a real PostgreSQL: every slot up to the horizon exactly once, the job snapshot,
NOTIFY wake-ups, disable and re-enable, max_count and end windows (expiry), misfire after a long gap, and
duplicates after a rewound cursor."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from schedulingfixtures import Kit, set_cursor, slot_records, slot_tasks

from hetuflow_core.enums import (
    CommandKind,
    MisfirePolicy,
    ScheduleKind,
    ScheduleStatus,
    SlotOutcome,
    TaskStatus,
)
from hetuflow_core.job import JobUpdate, Target
from hetuflow_core.schedule import Schedule, ScheduleCreate, ScheduleUpdate
from hetuflow_server.infra import notify
from hetuflow_server.scheduler.generator import MISSED_CHUNK
from hetuflow_server.service import AgentCapacity
from hetuflow_server.triggers import fire_times
from hetuflow_server.triggers.misfire import MisfireRule, split_slots
from hetuflow_server.triggers.upcoming import schedule_trigger

pytestmark = pytest.mark.usefixtures("quiet_schedules")

HORIZON_SECS = 5.0


def interval(job_id: object, secs: int = 1, **fields: object) -> ScheduleCreate:
    return ScheduleCreate(job_id=job_id, kind=ScheduleKind.INTERVAL, interval_secs=secs, **fields)  # type: ignore[arg-type]


def expected(schedule: Schedule, after: datetime, until: datetime) -> list[datetime]:
    trigger = schedule_trigger(schedule)
    assert trigger is not None
    return list(fire_times(trigger, after, until))


async def test_a_cycle_plans_every_slot_up_to_the_horizon_with_the_job_snapshot(kit: Kit) -> None:
    job = await kit.make_job(priority=7, env={"A": "1"})
    schedule = await kit.services.schedules.create(interval(job.id, parameters={"region": "eu"}))
    now = datetime.now(UTC)
    report = await (await kit.leading_generator(clock=lambda: now)).cycle()
    assert report.tasks >= HORIZON_SECS - 1
    tasks = await slot_tasks(kit.db, schedule.id)
    assert [task.scheduled_at for task in tasks] == expected(
        schedule, schedule.created_at, now + timedelta(seconds=HORIZON_SECS)
    )
    assert {task.status for task in tasks} == {TaskStatus.PENDING}
    assert {task.priority for task in tasks} == {7}
    assert all(task.parameters == {"region": "eu"} for task in tasks)
    assert all(task.config["env"] == {"A": "1"} and task.config["priority"] == 7 for task in tasks)
    stored = await kit.services.schedules.get(schedule.id)
    assert stored.generated_until == now + timedelta(seconds=HORIZON_SECS)
    assert stored.fire_count == len(tasks)
    assert await slot_records(kit.db, schedule.id) == []  # nothing came due yet
    # Editing the job later never changes what was planned.
    await kit.services.jobs.update(job.id, JobUpdate(config=msgspec.structs.replace(job.config, priority=1)))
    assert {task.priority for task in await slot_tasks(kit.db, schedule.id)} == {7}


async def test_generation_is_idempotent_and_a_rewound_cursor_records_duplicates(kit: Kit) -> None:
    job = await kit.make_job()
    schedule = await kit.services.schedules.create(
        interval(job.id, start_time=datetime.now(UTC) + timedelta(seconds=60))
    )
    generator = await kit.leading_generator(horizon_secs=120)
    await generator.cycle()
    first = await slot_tasks(kit.db, schedule.id)
    assert len(first) >= 59
    await generator.cycle()  # nothing left to do: the cursor is far ahead
    assert await slot_tasks(kit.db, schedule.id) == first
    planned = (await kit.services.schedules.get(schedule.id)).fire_count
    assert planned == len(first)

    # As if a second generator had not seen the first one's work: every slot is met again.
    await set_cursor(kit.db, schedule.id, schedule.created_at)
    report = await generator.cycle()
    assert report.tasks == 0
    assert report.deduplicated == len(first)
    assert await slot_tasks(kit.db, schedule.id) == first
    records = await slot_records(kit.db, schedule.id)
    assert [(r.scheduled_at, r.outcome, r.task_id) for r in records] == [
        (task.scheduled_at, SlotOutcome.DEDUPLICATED, task.id) for task in first
    ]
    # A duplicate was counted by whoever planned it first.
    assert (await kit.services.schedules.get(schedule.id)).fire_count == planned


async def test_nothing_is_generated_without_the_lease(kit: Kit) -> None:
    job = await kit.make_job()
    schedule = await kit.services.schedules.create(interval(job.id))
    holder, other = kit.leader(), kit.leader()
    assert await holder.step()
    assert not await other.step()
    report = await kit.generator(other).cycle()
    assert (report.schedules, report.tasks) == (0, 0)
    assert await slot_tasks(kit.db, schedule.id) == []


async def test_a_new_schedule_has_its_first_task_long_before_the_periodic_cycle(
    migrated_database_url: str, kit: Kit
) -> None:
    # The periodic cycle is five minutes away: only the NOTIFY can wake the generator before it.
    interval_secs = 300
    generator = await kit.leading_generator(horizon_secs=60, interval_secs=interval_secs)
    listener = notify.Listener(migrated_database_url)
    listener.subscribe(notify.SCHEDULE_CHANNEL, generator.on_notify)
    listener.start()
    loop = asyncio.create_task(generator.loop()())
    try:
        await listener.wait_connected(10)
        await asyncio.sleep(0.2)  # the loop's first wait has begun
        job = await kit.make_job()
        started = time.monotonic()
        schedule = await kit.services.schedules.create(interval(job.id, secs=10))
        # A tenth of the periodic interval: ample on a loaded machine, yet reachable only through the wake-up.
        while not await slot_tasks(kit.db, schedule.id):
            waited = time.monotonic() - started
            assert waited < interval_secs / 10, "no task before the periodic cycle: the NOTIFY woke nothing"
            await asyncio.sleep(0.02)
    finally:
        loop.cancel()
        await asyncio.wait({loop})
        await listener.stop()


async def test_disabling_a_schedule_removes_its_future_tasks_and_enabling_plans_again(kit: Kit) -> None:
    job = await kit.make_job()
    schedule = await kit.services.schedules.create(
        interval(job.id, start_time=datetime.now(UTC) + timedelta(seconds=60))
    )
    generator = await kit.leading_generator(horizon_secs=90)
    await generator.cycle()
    before = await slot_tasks(kit.db, schedule.id)
    assert before
    disabled = await kit.services.schedules.disable(schedule.id)
    assert await slot_tasks(kit.db, schedule.id) == []
    assert disabled.fire_count == 0  # removed slots no longer count
    assert (await generator.cycle()).tasks == 0  # disabled: nothing planned
    assert await slot_tasks(kit.db, schedule.id) == []
    await kit.services.schedules.enable(schedule.id)
    await generator.cycle()
    after = await slot_tasks(kit.db, schedule.id)
    assert [task.scheduled_at for task in after][: len(before)] == [task.scheduled_at for task in before]


async def test_disabling_the_job_removes_future_tasks_and_stops_generation(kit: Kit) -> None:
    job = await kit.make_job()
    schedule = await kit.services.schedules.create(
        interval(job.id, start_time=datetime.now(UTC) + timedelta(seconds=60))
    )
    generator = await kit.leading_generator(horizon_secs=90)
    await generator.cycle()
    assert await slot_tasks(kit.db, schedule.id)
    await kit.services.jobs.disable(job.id)
    assert await slot_tasks(kit.db, schedule.id) == []
    await generator.cycle()
    assert await slot_tasks(kit.db, schedule.id) == []
    assert (await kit.services.schedules.get(schedule.id)).fire_count == 0
    await kit.services.jobs.enable(job.id)
    await generator.cycle()
    assert await slot_tasks(kit.db, schedule.id)


async def test_max_count_plans_exactly_that_many_and_expires_after_the_last(kit: Kit) -> None:
    job = await kit.make_job()
    schedule = await kit.services.schedules.create(interval(job.id, max_count=3))
    now = datetime.now(UTC)
    generator = await kit.leading_generator(horizon_secs=60, clock=lambda: now)
    await generator.cycle()
    tasks = await slot_tasks(kit.db, schedule.id)
    assert len(tasks) == 3
    stored = await kit.services.schedules.get(schedule.id)
    # Every slot is planned, but the last one has not passed: still enabled, cursor at the last slot.
    assert (stored.status, stored.fire_count, stored.generated_until) == (
        ScheduleStatus.ENABLED,
        3,
        tasks[-1].scheduled_at,
    )
    await generator.cycle()
    assert (await kit.services.schedules.get(schedule.id)).status is ScheduleStatus.ENABLED
    now = tasks[-1].scheduled_at + timedelta(seconds=1)
    report = await generator.cycle()
    assert report.expired == 1
    assert (await kit.services.schedules.get(schedule.id)).status is ScheduleStatus.EXPIRED
    assert len(await slot_tasks(kit.db, schedule.id)) == 3


async def test_max_count_survives_disable_and_enable(kit: Kit) -> None:
    job = await kit.make_job()
    start = datetime.now(UTC) + timedelta(seconds=30)
    schedule = await kit.services.schedules.create(interval(job.id, secs=5, start_time=start, max_count=2))
    generator = await kit.leading_generator(horizon_secs=60)
    await generator.cycle()
    assert [t.scheduled_at for t in await slot_tasks(kit.db, schedule.id)] == [
        start,
        start + timedelta(seconds=5),
    ]
    await kit.services.schedules.disable(schedule.id)
    await kit.services.schedules.enable(schedule.id)
    await generator.cycle()
    assert [t.scheduled_at for t in await slot_tasks(kit.db, schedule.id)] == [
        start,
        start + timedelta(seconds=5),
    ]
    assert (await kit.services.schedules.get(schedule.id)).fire_count == 2


async def test_end_time_and_once_schedules_expire_after_their_last_slot(kit: Kit) -> None:
    job = await kit.make_job()
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)
    windowed = await kit.services.schedules.create(
        interval(job.id, secs=2, start_time=base, end_time=base + timedelta(seconds=5))
    )
    once = await kit.services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.ONCE, start_time=base)
    )
    past_once = await kit.services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.ONCE, start_time=base - timedelta(days=1))
    )
    now = datetime.now(UTC)
    generator = await kit.leading_generator(horizon_secs=60, clock=lambda: now)
    await generator.cycle()
    assert [t.scheduled_at for t in await slot_tasks(kit.db, windowed.id)] == [
        base + timedelta(seconds=s) for s in (0, 2, 4)
    ]
    assert [t.scheduled_at for t in await slot_tasks(kit.db, once.id)] == [base]
    # A once schedule whose instant passed before it was created never fires: it expires at once.
    assert await slot_tasks(kit.db, past_once.id) == []
    assert (await kit.services.schedules.get(past_once.id)).status is ScheduleStatus.EXPIRED
    assert (await kit.services.schedules.get(windowed.id)).status is ScheduleStatus.ENABLED
    now = base + timedelta(seconds=30)
    await generator.cycle()
    assert (await kit.services.schedules.get(windowed.id)).status is ScheduleStatus.EXPIRED
    assert (await kit.services.schedules.get(once.id)).status is ScheduleStatus.EXPIRED


@pytest.mark.parametrize(
    ("policy", "grace"),
    [
        (MisfirePolicy.SKIP, 0.0),
        (MisfirePolicy.RUN_ONCE, 0.0),
        (MisfirePolicy.RUN_ALL, 0.0),
        (MisfirePolicy.SKIP, 10.0),
    ],
)
async def test_misfire_policy_applies_to_slots_behind_the_cursor(
    policy: MisfirePolicy, grace: float, kit: Kit
) -> None:
    job = await kit.make_job()
    schedule = await kit.services.schedules.create(
        interval(job.id, misfire_policy=policy, misfire_grace_secs=grace, misfire_max_runs=5)
    )
    now = datetime.now(UTC)
    gap_start = now - timedelta(seconds=30)  # as if no leader had generated for thirty seconds
    await set_cursor(kit.db, schedule.id, gap_start)
    await (await kit.leading_generator(clock=lambda: now)).cycle()

    slots = expected(schedule, gap_start, now + timedelta(seconds=HORIZON_SECS))
    rule = MisfireRule(policy=policy, grace_secs=grace, max_runs=5)
    split = split_slots(rule, slots, now)
    assert [t.scheduled_at for t in await slot_tasks(kit.db, schedule.id)] == split.run
    records = await slot_records(kit.db, schedule.id)
    assert [(r.scheduled_at, r.outcome, r.task_id) for r in records] == [
        (s, SlotOutcome.MISSED, None) for s in split.missed
    ]
    assert all(r.detail is not None and f"misfire policy {policy.value}" in r.detail for r in records)
    late = [s for s in slots if rule.is_late(s, now)]
    assert len(late) >= 28 - grace
    assert len(split.run) - (len(slots) - len(late)) == min(rule.keep, len(late))
    assert (await kit.services.schedules.get(schedule.id)).fire_count == len(slots)


async def test_a_long_gap_is_streamed_in_chunks(kit: Kit) -> None:
    job = await kit.make_job()
    schedule = await kit.services.schedules.create(
        interval(job.id, misfire_policy=MisfirePolicy.RUN_ALL, misfire_max_runs=3)
    )
    now = datetime.now(UTC)
    gap = 3 * MISSED_CHUNK + 500  # seconds of a one-second schedule
    await set_cursor(kit.db, schedule.id, now - timedelta(seconds=gap))
    report = await (await kit.leading_generator(clock=lambda: now)).cycle()
    records = await slot_records(kit.db, schedule.id)
    tasks = await slot_tasks(kit.db, schedule.id)
    slots = expected(schedule, now - timedelta(seconds=gap), now + timedelta(seconds=HORIZON_SECS))
    assert report.missed == len(records) == len(slots) - len(tasks)
    assert sorted([r.scheduled_at for r in records] + [t.scheduled_at for t in tasks]) == slots
    rule = MisfireRule(policy=MisfirePolicy.RUN_ALL, max_runs=3)
    assert len([t for t in tasks if rule.is_late(t.scheduled_at, now)]) == 3
    assert max(r.scheduled_at for r in records) < min(t.scheduled_at for t in tasks)
    assert (await kit.services.schedules.get(schedule.id)).fire_count == len(slots)


async def test_a_rule_change_keeps_the_slot_already_handed_to_an_agent(kit: Kit) -> None:
    # A command no other test's job uses: the dispatch below claims this test's tasks only.
    job = await kit.make_job(command="python", script="pass", target=Target(labels={"suite": "rule-change"}))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    schedule = await kit.services.schedules.create(interval(job.id, secs=5, start_time=start, max_count=4))
    generator = await kit.leading_generator(horizon_secs=60)
    await generator.cycle()
    tasks = await slot_tasks(kit.db, schedule.id)
    assert len(tasks) == 4
    # The first slot goes to an agent ahead of time; then the schedule's window changes (a rule change).
    agent = AgentCapacity(
        agent_id="rule-change", labels={"suite": "rule-change"}, commands=[CommandKind.PYTHON], free_slots=50
    )
    dispatched = await kit.services.dispatch.dispatch([agent], lookahead_secs=32)
    assert [d.task.id for d in dispatched if d.task.schedule_id == schedule.id] == [tasks[0].id]
    await kit.services.schedules.update(schedule.id, ScheduleUpdate(end_time=start + timedelta(hours=1)))
    assert [t.id for t in await slot_tasks(kit.db, schedule.id)] == [tasks[0].id]
    report = await generator.cycle()
    assert report.deduplicated == 1  # met again, and not planned twice ...
    again = await slot_tasks(kit.db, schedule.id)
    assert [t.scheduled_at for t in again] == [t.scheduled_at for t in tasks]
    assert again[0].id == tasks[0].id
    (record,) = await slot_records(kit.db, schedule.id)
    # ... and its record still says it ran, as that task.
    assert (record.scheduled_at, record.outcome, record.task_id) == (start, SlotOutcome.RAN, tasks[0].id)
    assert (await kit.services.schedules.get(schedule.id)).fire_count == 4


async def test_next_fire_times_count_planned_slots_once(kit: Kit) -> None:
    job = await kit.make_job()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    schedule = await kit.services.schedules.create(interval(job.id, secs=10, start_time=start, max_count=3))
    slots = [start + timedelta(seconds=10 * i) for i in range(3)]

    async def upcoming(count: int = 10, after: datetime | None = None) -> list[datetime]:
        return list((await kit.services.schedules.next_fire_times(schedule.id, count=count, after=after))[1])

    assert await upcoming() == slots
    await (await kit.leading_generator(horizon_secs=120)).cycle()
    assert (await kit.services.schedules.get(schedule.id)).fire_count == 3  # all three planned ahead ...
    assert await upcoming() == slots  # ... and still to come
    assert await upcoming(count=2) == slots[:2]
    assert await upcoming(after=slots[0] + timedelta(seconds=1)) == slots[1:]
    # A cursor behind the clock: the slots in between still use up max_count before anything later.
    await set_cursor(kit.db, schedule.id, slots[0])
    async with kit.db.transaction() as conn:
        await conn.execute("UPDATE sched_schedule SET fire_count = 1 WHERE id = %s", (schedule.id,))
    assert await upcoming(after=slots[1] + timedelta(seconds=1)) == slots[2:]
    await kit.services.schedules.disable(schedule.id)
    assert await upcoming() == []
