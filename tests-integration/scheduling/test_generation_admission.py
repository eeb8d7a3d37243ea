"""Admission of due slots at dispatch, against a real PostgreSQL: misfire policies for tasks planned before an
outage, the grace period, slots planned in time that only waited for an agent (they start, however late,
unless a start deadline passed), overlap policies (forbid skips, replace cancels through the agent-command
channel), slots of forbid/replace jobs claimed only when due, and the slot record of each outcome.

The scheduler's uptime (``sched_uptime``) is written by the servers' heartbeats; no server runs here, so a
test that needs the scheduler up since some moment says so with ``up_since`` and the row goes after it.

Each test's jobs require a label of their own (``suite``) and the dispatch offers one agent with it, so a test
only ever claims its own tasks from the module's shared database.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest
from dbfixtures import MakeJob
from schedulingfixtures import slot_records, slot_tasks

from hetuflow_core.enums import (
    AgentCommandKind,
    CommandKind,
    ConcurrencyPolicy,
    MisfirePolicy,
    ScheduleKind,
    SlotOutcome,
    TaskStatus,
)
from hetuflow_core.ids import uuid7
from hetuflow_core.job import Job, Target
from hetuflow_core.schedule import Schedule, ScheduleCreate
from hetuflow_core.task import TaskTrigger
from hetuflow_server.infra import ModelManager, bmc, notify
from hetuflow_server.service import AgentCapacity, Services
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

_suites = itertools.count()


class Fixture:
    """One test's job, schedule and agent."""

    def __init__(
        self, services: Services, db: ModelManager, job: Job, schedule: Schedule, suite: str
    ) -> None:
        self.services = services
        self.db = db
        self.job = job
        self.schedule = schedule
        self.agent = AgentCapacity(
            agent_id=f"agent-{suite}", labels={"suite": suite}, commands=[CommandKind.BASH], free_slots=20
        )

    async def plan(self, *offsets: float) -> list[UUID]:
        """Slot tasks of the schedule at now + each offset in seconds, as the generator would make them."""
        now = datetime.now(UTC)
        async with self.db.transaction() as conn:
            made = await bmc.TaskBmc.insert_many(
                conn,
                [
                    bmc.NewTask(
                        id=uuid7(),
                        job_id=self.job.id,
                        origin=bmc.TaskOrigin.SCHEDULE,
                        schedule_id=self.schedule.id,
                        scheduled_at=now + timedelta(seconds=offset),
                        config=self.job.config,
                    )
                    for offset in offsets
                ],
                by=None,
            )
        return [task.id for task in made]

    async def plan_in_time(self, *offsets: float) -> list[UUID]:
        """Like ``plan``, but the tasks were made well before their slots (as the generation horizon does)."""
        ids = await self.plan(*offsets)
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE sched_task SET created_at = scheduled_at - interval '10 minutes' WHERE id = ANY(%s)",
                (ids,),
            )
        return ids

    async def dispatch(self) -> list[UUID]:
        """One dispatch round for this test's agent; the ids of the tasks it started."""
        return [d.task.id for d in await self.services.dispatch.dispatch([self.agent])]

    async def statuses(self) -> dict[UUID, TaskStatus]:
        return {task.id: task.status for task in await slot_tasks(self.db, self.schedule.id)}

    async def outcomes(self) -> dict[UUID | None, SlotOutcome]:
        return {record.task_id: record.outcome for record in await slot_records(self.db, self.schedule.id)}


UpSince = Callable[[float], Awaitable[None]]


@pytest.fixture
async def up_since(services: Services, model_manager: ModelManager) -> AsyncIterator[UpSince]:
    """``await up_since(secs)``: the scheduler has been up without a gap since ``secs`` seconds ago."""

    async def set_up_since(secs: float) -> None:
        await services.servers.mark_up(gap_secs=3600)
        async with model_manager.transaction() as conn:
            await conn.execute(
                "UPDATE sched_uptime SET up_since = now() - make_interval(secs => %s)", (secs,)
            )

    yield set_up_since
    async with model_manager.transaction() as conn:
        await conn.execute("DELETE FROM sched_uptime")


async def setup(
    services: Services,
    model_manager: ModelManager,
    make_job: MakeJob,
    *,
    concurrency: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW,
    **schedule_fields: object,
) -> Fixture:
    suite = f"admission-{next(_suites)}"
    job = await make_job(concurrency=concurrency, target=Target(labels={"suite": suite}))
    # A schedule whose own slots lie far ahead: the tests plan the slots they need themselves.
    schedule = await services.schedules.create(
        ScheduleCreate(
            job_id=job.id,
            kind=ScheduleKind.INTERVAL,
            interval_secs=3600,
            start_time=datetime.now(UTC) + timedelta(days=1),
            **schedule_fields,  # type: ignore[arg-type]
        )
    )
    return Fixture(services, model_manager, job, schedule, suite)


@pytest.mark.parametrize(
    ("policy", "late_that_run"),
    [(MisfirePolicy.SKIP, 0), (MisfirePolicy.RUN_ONCE, 1), (MisfirePolicy.RUN_ALL, 2)],
)
async def test_slots_planned_before_an_outage_follow_the_misfire_policy(
    policy: MisfirePolicy,
    late_that_run: int,
    services: Services,
    model_manager: ModelManager,
    make_job: MakeJob,
) -> None:
    f = await setup(
        services, model_manager, make_job, misfire_policy=policy, misfire_grace_secs=0, misfire_max_runs=2
    )
    late = await f.plan(-10, -9, -8, -7, -6)  # the server was down while these came due
    on_time = await f.plan(-MISFIRE_SLACK_SECS / 4, 2)  # just due, and due within the look-ahead
    started = await f.dispatch()
    kept = late[len(late) - late_that_run :] if late_that_run else []
    assert sorted(started) == sorted(kept + on_time)
    statuses = await f.statuses()
    missed = [task for task in late if task not in kept]
    assert all(statuses[task] is TaskStatus.SKIPPED for task in missed)
    outcomes = await f.outcomes()
    assert outcomes == {
        **dict.fromkeys(missed, SlotOutcome.MISSED),
        **dict.fromkeys(started, SlotOutcome.RAN),
    }
    (task,) = [t for t in await slot_tasks(model_manager, f.schedule.id) if t.id == late[0]]
    assert task.error is not None
    assert f"misfire policy {policy.value}" in task.error


async def test_late_slots_within_grace_run_normally(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    f = await setup(
        services, model_manager, make_job, misfire_policy=MisfirePolicy.SKIP, misfire_grace_secs=30
    )
    within = await f.plan(-20, -10)
    beyond = await f.plan(-40)
    assert sorted(await f.dispatch()) == sorted(within)
    assert (await f.statuses())[beyond[0]] is TaskStatus.SKIPPED


async def test_slots_planned_in_time_wait_for_an_agent_however_late(
    services: Services, model_manager: ModelManager, make_job: MakeJob, up_since: UpSince
) -> None:
    # The strictest misfire settings: waiting for a free agent still is no misfire.
    f = await setup(
        services, model_manager, make_job, misfire_policy=MisfirePolicy.SKIP, misfire_grace_secs=0
    )
    await up_since(3600)
    waited = await f.plan_in_time(-300, -120, -30)  # every agent was busy for five minutes
    assert sorted(await f.dispatch()) == sorted(waited)
    assert await f.outcomes() == dict.fromkeys(waited, SlotOutcome.RAN)


async def test_a_start_deadline_misses_a_slot_that_waited_too_long(
    services: Services, model_manager: ModelManager, make_job: MakeJob, up_since: UpSince
) -> None:
    f = await setup(services, model_manager, make_job, start_deadline_secs=10)
    await up_since(3600)
    (too_late,) = await f.plan_in_time(-60)
    (within,) = await f.plan_in_time(-5)
    assert await f.dispatch() == [within]
    assert (await f.statuses())[too_late] is TaskStatus.SKIPPED
    (record,) = [r for r in await slot_records(model_manager, f.schedule.id) if r.task_id == too_late]
    assert record.outcome is SlotOutcome.MISSED
    assert record.detail is not None
    assert "not started within the start deadline of 10 s" in record.detail


@pytest.mark.parametrize(
    ("policy", "late_that_run"),
    [(MisfirePolicy.SKIP, 0), (MisfirePolicy.RUN_ONCE, 1), (MisfirePolicy.RUN_ALL, 2)],
)
async def test_slots_due_while_the_scheduler_was_down_follow_the_misfire_policy(
    policy: MisfirePolicy,
    late_that_run: int,
    services: Services,
    model_manager: ModelManager,
    make_job: MakeJob,
    up_since: UpSince,
) -> None:
    f = await setup(
        services, model_manager, make_job, misfire_policy=policy, misfire_grace_secs=0, misfire_max_runs=2
    )
    await up_since(10)  # every server was down until ten seconds ago
    down = await f.plan_in_time(-40, -35, -30, -25)  # planned before the outage, as the horizon does
    kept = down[len(down) - late_that_run :] if late_that_run else []
    assert sorted(await f.dispatch()) == sorted(kept)
    assert await f.outcomes() == {
        **dict.fromkeys([task for task in down if task not in kept], SlotOutcome.MISSED),
        **dict.fromkeys(kept, SlotOutcome.RAN),
    }


async def test_a_slot_due_after_the_scheduler_came_back_waits_for_an_agent(
    services: Services, model_manager: ModelManager, make_job: MakeJob, up_since: UpSince
) -> None:
    f = await setup(
        services, model_manager, make_job, misfire_policy=MisfirePolicy.SKIP, misfire_grace_secs=0
    )
    await up_since(30)
    (down,) = await f.plan_in_time(-40)
    (back,) = await f.plan_in_time(-20)
    assert await f.dispatch() == [back]
    assert await f.outcomes() == {down: SlotOutcome.MISSED, back: SlotOutcome.RAN}


async def test_a_slot_due_just_before_the_scheduler_came_back_waits_for_an_agent(
    services: Services, model_manager: ModelManager, make_job: MakeJob, up_since: UpSince
) -> None:
    f = await setup(
        services, model_manager, make_job, misfire_policy=MisfirePolicy.SKIP, misfire_grace_secs=0
    )
    await up_since(20)
    # Due within the slack before the scheduler was back: it was back in time for that slot, however much
    # later the first dispatch comes (here twenty seconds).
    (within,) = await f.plan_in_time(-20 - MISFIRE_SLACK_SECS / 2)
    (beyond,) = await f.plan_in_time(-20 - MISFIRE_SLACK_SECS * 3)
    assert await f.dispatch() == [within]
    assert await f.outcomes() == {beyond: SlotOutcome.MISSED, within: SlotOutcome.RAN}


@pytest.mark.parametrize(
    ("policy", "late_that_run"), [(MisfirePolicy.RUN_ONCE, 1), (MisfirePolicy.RUN_ALL, 2)]
)
async def test_slots_that_only_wait_for_an_agent_do_not_crowd_out_the_late_ones_that_run(
    policy: MisfirePolicy,
    late_that_run: int,
    services: Services,
    model_manager: ModelManager,
    make_job: MakeJob,
    up_since: UpSince,
) -> None:
    f = await setup(
        services, model_manager, make_job, misfire_policy=policy, misfire_grace_secs=0, misfire_max_runs=2
    )
    await up_since(30)
    down = await f.plan_in_time(-45, -40, -35)  # due while every server was down
    waited = await f.plan_in_time(-20, -15)  # due once it was back; no agent was free until now
    kept = down[len(down) - late_that_run :]
    # The waiting slots are overdue but not late: the policy still runs the latest late ones.
    assert sorted(await f.dispatch()) == sorted(kept + waited)
    assert await f.outcomes() == {
        **dict.fromkeys([task for task in down if task not in kept], SlotOutcome.MISSED),
        **dict.fromkeys(kept + waited, SlotOutcome.RAN),
    }


async def test_manual_tasks_and_retries_are_never_judged(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    f = await setup(services, model_manager, make_job)
    manual = await services.jobs.trigger(
        f.job.id, TaskTrigger(scheduled_at=datetime.now(UTC) - timedelta(hours=1))
    )
    (retry,) = await f.plan(-60)
    async with model_manager.transaction() as conn:  # a slot whose first attempt ran and is due to retry
        await conn.execute("UPDATE sched_task SET attempt = 1 WHERE id = %s", (retry,))
    started = [d.task.id for d in await services.dispatch.dispatch([f.agent])]
    assert sorted(started) == sorted([*manual.task_ids, retry])
    assert await f.outcomes() == {}  # a retry is not a new slot: nothing recorded


async def test_forbid_skips_a_due_slot_while_the_previous_run_goes(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    f = await setup(services, model_manager, make_job, concurrency=ConcurrencyPolicy.FORBID)
    (first,) = await f.plan(-0.5)
    assert await f.dispatch() == [first]  # nothing else goes: it runs
    (second,) = await f.plan(-0.2)
    assert await f.dispatch() == []
    statuses = await f.statuses()
    assert (statuses[first], statuses[second]) == (TaskStatus.DISPATCHED, TaskStatus.SKIPPED)
    (record,) = [r for r in await slot_records(model_manager, f.schedule.id) if r.task_id == second]
    assert record.outcome is SlotOutcome.SKIPPED_OVERLAP
    assert record.detail is not None
    assert str(first) in record.detail
    # Once the first run ends, the next due slot runs again.
    async with model_manager.transaction() as conn:
        await conn.execute(
            "UPDATE sched_task SET status = 'succeeded', completed_at = now() WHERE id = %s", (first,)
        )
    (third,) = await f.plan(-0.1)
    assert await f.dispatch() == [third]
    assert (await f.outcomes())[third] is SlotOutcome.RAN


async def test_several_due_slots_of_a_forbid_schedule_run_one_at_a_time(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    f = await setup(
        services,
        model_manager,
        make_job,
        concurrency=ConcurrencyPolicy.FORBID,
        misfire_policy=MisfirePolicy.RUN_ALL,
        misfire_grace_secs=0,
    )
    tasks = await f.plan(-12, -11, -10)
    assert await f.dispatch() == [tasks[0]]
    outcomes = await f.outcomes()
    assert [outcomes[task] for task in tasks] == [
        SlotOutcome.RAN,
        SlotOutcome.SKIPPED_OVERLAP,
        SlotOutcome.SKIPPED_OVERLAP,
    ]


@pytest.mark.parametrize("policy", [ConcurrencyPolicy.FORBID, ConcurrencyPolicy.REPLACE])
async def test_forbid_and_replace_slots_are_claimed_when_due_not_ahead(
    policy: ConcurrencyPolicy, services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    f = await setup(services, model_manager, make_job, concurrency=policy)
    (soon,) = await f.plan(1.0)  # inside the look-ahead window
    assert await f.dispatch() == []
    assert (await f.statuses())[soon] is TaskStatus.PENDING
    (task,) = await slot_tasks(model_manager, f.schedule.id)
    wake_at = await services.dispatch.next_wake_at(lookahead_secs=5)
    assert wake_at is not None
    assert wake_at <= task.scheduled_at  # the dispatcher wakes up for it when it comes due
    await asyncio.sleep(max(0.0, (task.scheduled_at - datetime.now(UTC)).total_seconds()) + 0.05)
    assert await f.dispatch() == [soon]


async def test_replace_cancels_the_running_run_through_the_agent_command_channel(
    services: Services, model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    f = await setup(services, model_manager, make_job, concurrency=ConcurrencyPolicy.REPLACE)
    (old,) = await f.plan(-0.5)
    (dispatch,) = await services.dispatch.dispatch([f.agent])
    assert dispatch.task.id == old
    async with await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as listen:
        await listen.execute(f"LISTEN {notify.AGENT_CMD_CHANNEL}")
        (new,) = await f.plan(-0.2)
        assert await f.dispatch() == [new]
        notice = None
        async for note in listen.notifies(timeout=5):
            notice = notify.decode_agent_command(note.payload)
            break
    assert notice is not None
    assert (notice.command, notice.instance_id, notice.agent_id) == (
        AgentCommandKind.CANCEL,
        dispatch.instance.id,
        f.agent.agent_id,
    )
    assert notice.reason is not None
    assert str(new) in notice.reason
    statuses = await f.statuses()
    assert (statuses[old], statuses[new]) == (TaskStatus.CANCELLED, TaskStatus.DISPATCHED)
    assert (await f.outcomes())[new] is SlotOutcome.RAN
