"""Concurrent transitions on one task: whatever the interleaving, exactly one of two conflicting changes
applies, and concurrent claimers never take the same task."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.enums import CommandKind, InstanceStatus, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig, Target
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.task import TaskTrigger
from hetuflow_server.errors import IllegalTransition
from hetuflow_server.infra import ModelManager, bmc
from hetuflow_server.service import AgentCapacity, ReportOutcome, Services

AGENT = AgentCapacity(agent_id="racer", labels={}, commands=[CommandKind.BASH], free_slots=1000)


async def _running_task(services: Services, job_id: UUID) -> tuple[UUID, UUID]:
    (task_id,) = (await services.jobs.trigger(job_id, TaskTrigger())).task_ids
    dispatches = await services.dispatch.dispatch([AGENT], limit=1)
    assert [d.task.id for d in dispatches] == [task_id]
    instance_id = dispatches[0].instance.id
    report = TaskInstanceUpdatedData(instance_id=instance_id, task_id=task_id, status=InstanceStatus.RUNNING)
    (result,) = await services.dispatch.apply_reports([report], agent_id="racer")
    assert result.outcome is ReportOutcome.APPLIED
    return task_id, instance_id


async def test_interleaved_succeed_and_cancel_apply_exactly_one(
    model_manager: ModelManager, services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    task_id, instance_id = await _running_task(services, job.id)
    # Connection A moves the task to succeeded and holds its transaction open; B tries to cancel meanwhile and
    # must wait for A's row lock, then see `succeeded` and change nothing.
    async with await psycopg.AsyncConnection.connect(
        migrated_database_url, row_factory=psycopg.rows.dict_row
    ) as a:
        first = await bmc.TaskBmc.transition(a, task_id, TaskStatus.SUCCEEDED, instance_id=instance_id)
        assert first is not None
        cancel = asyncio.create_task(services.tasks.cancel(task_id))
        await asyncio.sleep(0.2)
        assert not cancel.done()  # blocked on A's row lock
        await a.commit()
        with pytest.raises(IllegalTransition):
            await cancel
    assert (await services.tasks.get(task_id)).status is TaskStatus.SUCCEEDED


@pytest.mark.parametrize("rounds", [20])
async def test_concurrent_cancels_apply_once(rounds: int, services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    for _ in range(rounds):
        task_id, _ = await _running_task(services, job.id)
        outcomes = await asyncio.gather(
            services.tasks.cancel(task_id), services.tasks.cancel(task_id), return_exceptions=True
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        assert sum(isinstance(o, IllegalTransition) for o in outcomes) == 1
        assert (await services.tasks.get(task_id)).status is TaskStatus.CANCELLED


async def test_report_racing_cancel_leaves_one_final_state(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    for _ in range(20):
        task_id, instance_id = await _running_task(services, job.id)
        report = TaskInstanceUpdatedData(
            instance_id=instance_id, task_id=task_id, status=InstanceStatus.SUCCEEDED, exit_code=0
        )
        cancelled, reported = await asyncio.gather(
            services.tasks.cancel(task_id),
            services.dispatch.apply_reports([report], agent_id="racer"),
            return_exceptions=True,
        )
        final = await services.tasks.get(task_id)
        # The instance report always applies (the attempt did succeed on the agent) ...
        assert not isinstance(reported, BaseException)
        assert reported[0].outcome is ReportOutcome.APPLIED
        # ... but the task ends in exactly one final state, set by exactly one of the two.
        if isinstance(cancelled, IllegalTransition):
            assert final.status is TaskStatus.SUCCEEDED
            assert reported[0].task is not None
        else:
            assert not isinstance(cancelled, BaseException)
            assert final.status is TaskStatus.CANCELLED
            assert reported[0].task is None


async def test_concurrent_claimers_never_take_the_same_task(
    model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    now = datetime.now(UTC)
    task_ids = {uuid7() for _ in range(300)}
    async with model_manager.transaction() as conn:
        await bmc.TaskBmc.insert_many(
            conn,
            [
                bmc.NewTask(
                    id=task_id,
                    job_id=job.id,
                    origin=bmc.TaskOrigin.MANUAL,
                    scheduled_at=now,
                    config=JobConfig(
                        command=CommandKind.BASH, script="true", target=Target(labels={"race": "yes"})
                    ),
                )
                for task_id in task_ids
            ],
            by=None,
        )
    profile = bmc.AgentProfile(labels={"race": "yes"}, commands=["bash"])
    claimed: list[list[UUID]] = [[] for _ in range(4)]
    barrier = asyncio.Barrier(4)

    async def claimer(index: int) -> None:
        # Each claimer holds its locks until every claimer has claimed, as a dispatcher does until it commits.
        async with await psycopg.AsyncConnection.connect(
            migrated_database_url, row_factory=psycopg.rows.dict_row
        ) as conn:
            tasks = await bmc.TaskBmc.claim_due(conn, horizon=now, profiles=[profile], limit=100)
            claimed[index].extend(task.id for task in tasks)
            await barrier.wait()
            await conn.rollback()

    await asyncio.gather(*(claimer(i) for i in range(4)))
    everything = [task_id for batch in claimed for task_id in batch]
    assert len(everything) == len(set(everything)) == 300
    assert set(everything) == task_ids


async def test_concurrent_dispatchers_dispatch_each_task_once(
    model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job(target={"labels": {"pool": "dispatch-race"}})
    services = Services(model_manager)
    for _ in range(200):
        await services.jobs.trigger(job.id, TaskTrigger())
    agents = [
        AgentCapacity(
            agent_id=f"d{i}", labels={"pool": "dispatch-race"}, commands=[CommandKind.BASH], free_slots=7
        )
        for i in range(3)
    ]

    async def dispatcher(agent: AgentCapacity) -> list[UUID]:
        mine: list[UUID] = []
        while True:
            batch = await services.dispatch.dispatch([agent], limit=7)
            if not batch:
                return mine
            assert all(d.instance.agent_id == agent.agent_id for d in batch)
            mine.extend(d.task.id for d in batch)

    results = await asyncio.gather(*(dispatcher(agent) for agent in agents))
    everything = [task_id for batch in results for task_id in batch]
    assert len(everything) == len(set(everything)) == 200
    with psycopg.connect(migrated_database_url) as conn:
        row = conn.execute(
            b"SELECT count(*), count(DISTINCT task_id) FROM sched_task_instance WHERE job_id = %s", (job.id,)
        ).fetchone()
    assert row == (200, 200)
