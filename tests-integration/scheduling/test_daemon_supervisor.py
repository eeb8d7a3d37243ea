"""The daemon supervisor against a real PostgreSQL: one live run per daemon schedule (per agent for broadcast
jobs), restarts after the backoff of short runs, stops on disable, never two live runs whoever races, and no
misfire judgement of a late restart. The behaviour with real agents is in ``test_daemon_e2e.py``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from schedulingfixtures import Kit

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind, InstanceStatus, ScheduleKind, ScheduleStatus, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import AgentRegisterData, TaskInstanceUpdatedData
from hetuflow_core.schedule import ScheduleCreate, ScheduleUpdate
from hetuflow_core.task import Task
from hetuflow_server.errors import InvalidInput
from hetuflow_server.infra import bmc
from hetuflow_server.scheduler.daemon import DaemonSupervisor
from hetuflow_server.service import AgentCapacity, Services

pytestmark = pytest.mark.usefixtures("quiet_schedules")

LIVE = (TaskStatus.PENDING, TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.WAITING_RETRY)


async def supervisor(kit: Kit, **kwargs: Any) -> DaemonSupervisor:
    leader = kit.leader()
    assert await leader.step()
    return DaemonSupervisor(kit.db, leader, rand=lambda: 0.0, **kwargs)


async def daemon_schedule(kit: Kit, **config: Any) -> tuple[UUID, UUID]:
    """A new job (retry policy: 1 s base, no jitter, unless given) and a daemon schedule of it."""
    job = await kit.make_job(**{"retry": {"base_secs": 1, "max_secs": 60, "jitter": 0}, **config})
    schedule = await kit.services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.DAEMON, parameters={"role": "daemon"})
    )
    return job.id, schedule.id


async def tasks_of(kit: Kit, schedule_id: UUID) -> list[Task]:
    async with kit.db.transaction() as conn:
        return await bmc.TaskBmc.select_page(conn, schedule_id=schedule_id, limit=1000)


async def live_of(kit: Kit, schedule_id: UUID) -> list[Task]:
    return [task for task in await tasks_of(kit, schedule_id) if task.status in LIVE]


async def run_and_end(services: Services, task: Task, *, ran_secs: float, agent_id: str = "agent-x") -> Task:
    """Dispatch ``task`` to a (virtual) agent, report it running and then failed; its process 'lived'
    ``ran_secs``. The task as it ended."""
    dispatched = await services.dispatch.dispatch(
        [AgentCapacity(agent_id=agent_id, labels={}, commands=[CommandKind.BASH], free_slots=50)],
        lookahead_secs=3600,
    )
    [mine] = [d for d in dispatched if d.task.id == task.id]
    for status, exit_code in ((InstanceStatus.RUNNING, None), (InstanceStatus.FAILED, 3)):
        report = TaskInstanceUpdatedData(
            instance_id=mine.instance.id, task_id=task.id, status=status, exit_code=exit_code
        )
        await services.dispatch.apply_reports([report], agent_id=None)
    async with services.db.transaction() as conn:
        await conn.execute(
            "UPDATE sched_task_instance SET started_at = completed_at - make_interval(secs => %s)"
            " WHERE id = %s",
            (ran_secs, mine.instance.id),
        )
        return await bmc.TaskBmc.get(conn, task.id)


async def test_one_live_run_and_its_snapshot(kit: Kit) -> None:
    sup = await supervisor(kit)
    job_id, schedule_id = await daemon_schedule(kit, retry={"max_retries": 4, "base_secs": 1, "jitter": 0})
    before = datetime.now(UTC)
    assert await sup.cycle() == 1
    assert await sup.cycle() == 0  # filled: nothing more
    [task] = await tasks_of(kit, schedule_id)
    assert task.status is TaskStatus.PENDING
    assert before <= task.scheduled_at <= datetime.now(UTC)  # the first start is immediate
    assert task.job_id == job_id
    assert task.parameters == {"role": "daemon"}
    assert task.config.retry.max_retries == 0  # every restart is a new run, never a task retry
    assert (await kit.services.schedules.next_fire_times(schedule_id, count=3))[1] == []


async def test_restarts_after_growing_delays_and_resets_after_a_healthy_run(kit: Kit) -> None:
    sup = await supervisor(kit)
    _, schedule_id = await daemon_schedule(kit)
    await sup.cycle()
    delays = []
    for _ in range(3):
        [task] = await live_of(kit, schedule_id)
        ended = await run_and_end(kit.services, task, ran_secs=0.5)
        assert ended.status is TaskStatus.FAILED
        assert await sup.cycle() == 1
        [nxt] = await live_of(kit, schedule_id)
        assert ended.completed_at is not None
        delays.append(round((nxt.scheduled_at - ended.completed_at).total_seconds(), 3))
    assert delays == [1.0, 2.0, 4.0]
    [task] = await live_of(kit, schedule_id)
    ended = await run_and_end(kit.services, task, ran_secs=3600)
    await sup.cycle()
    [nxt] = await live_of(kit, schedule_id)
    assert ended.completed_at is not None
    assert nxt.scheduled_at - ended.completed_at < timedelta(seconds=1)  # healthy: restarted at once


async def test_healthy_threshold_is_a_setting(kit: Kit) -> None:
    sup = await supervisor(kit, healthy_secs=0.1)
    _, schedule_id = await daemon_schedule(kit)
    await sup.cycle()
    [task] = await live_of(kit, schedule_id)
    ended = await run_and_end(kit.services, task, ran_secs=0.5)
    await sup.cycle()
    [nxt] = await live_of(kit, schedule_id)
    assert ended.completed_at is not None
    assert nxt.scheduled_at - ended.completed_at < timedelta(seconds=1)


async def test_racing_supervisors_and_inserts_never_make_two_live_runs(kit: Kit) -> None:
    leader = kit.leader()
    assert await leader.step()
    sups = [DaemonSupervisor(kit.db, leader) for _ in range(4)]
    _, schedule_id = await daemon_schedule(kit)
    counts = await asyncio.gather(*(sup.cycle() for sup in sups))
    assert sum(counts) == 1
    [live] = await live_of(kit, schedule_id)
    # The database refuses a second live run whoever inserts it.
    duplicate = bmc.NewTask(
        id=uuid7(),
        job_id=live.job_id,
        schedule_id=schedule_id,
        origin=bmc.TaskOrigin.DAEMON,
        scheduled_at=datetime.now(UTC),
        config=live.config,
    )
    async with kit.db.transaction() as conn:
        assert await bmc.TaskBmc.insert_many(conn, [duplicate], by=None) == []


async def test_disabling_the_schedule_or_job_cancels_the_live_run(kit: Kit) -> None:
    sup = await supervisor(kit)
    job_id, schedule_id = await daemon_schedule(kit)
    await sup.cycle()
    [task] = await live_of(kit, schedule_id)
    running = await kit.services.dispatch.dispatch(
        [AgentCapacity(agent_id="agent-d", labels={}, commands=[CommandKind.BASH], free_slots=50)],
        lookahead_secs=3600,
    )
    assert task.id in {d.task.id for d in running}
    await kit.services.schedules.disable(schedule_id)
    cancelled = await kit.services.tasks.get(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.error == "daemon schedule disabled"
    assert await sup.cycle() == 0
    assert await live_of(kit, schedule_id) == []

    await kit.services.schedules.enable(schedule_id)
    assert await sup.cycle() == 1
    await kit.services.jobs.disable(job_id)
    assert await live_of(kit, schedule_id) == []
    assert await sup.cycle() == 0

    await kit.services.jobs.enable(job_id)
    assert await sup.cycle() == 1
    await kit.services.schedules.update(schedule_id, ScheduleUpdate(status=ScheduleStatus.DISABLED))
    assert await live_of(kit, schedule_id) == []
    await kit.services.schedules.enable(schedule_id)
    assert await sup.cycle() == 1
    await kit.services.schedules.delete(schedule_id)
    assert [t.status for t in await kit.services.tasks.list_instances(task.id)]  # history stays
    async with kit.db.transaction() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM sched_task WHERE job_id = %s AND origin = 'daemon'"
            " AND status IN ('pending', 'dispatched', 'running', 'waiting_retry')",
            (job_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    assert row["n"] == 0


async def test_a_late_restart_is_never_skipped_as_a_misfire(kit: Kit) -> None:
    sup = await supervisor(kit)
    _, schedule_id = await daemon_schedule(kit)
    await sup.cycle()
    [task] = await live_of(kit, schedule_id)
    async with kit.db.transaction() as conn:  # as if no agent could take it for an hour
        await conn.execute(
            "UPDATE sched_task SET scheduled_at = scheduled_at - interval '1 hour' WHERE id = %s", (task.id,)
        )
    dispatched = await kit.services.dispatch.dispatch(
        [AgentCapacity(agent_id="agent-late", labels={}, commands=[CommandKind.BASH], free_slots=50)]
    )
    assert task.id in {d.task.id for d in dispatched}
    assert (await kit.services.tasks.get(task.id)).status is TaskStatus.DISPATCHED


async def test_a_broadcast_daemon_runs_on_every_matching_online_agent(kit: Kit) -> None:
    server_id = uuid7()
    await kit.services.servers.register(server_id, name="daemon-test", address=None)
    label = {"pool": f"daemons-{uuid7().hex[:8]}"}
    for agent_id, labels in (("bd-1", label), ("bd-2", label), ("bd-3", {})):
        data = AgentRegisterData(
            agent_id=agent_id,
            name=agent_id,
            labels=labels,
            capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=2),
        )
        await kit.services.agents.register(data, server_id=server_id, address=None)
    sup = await supervisor(kit)
    _, schedule_id = await daemon_schedule(kit, target={"labels": label, "routing": "broadcast"})
    assert await sup.cycle() == 2
    live = await live_of(kit, schedule_id)
    assert sorted(task.config.target.agent_id or "" for task in live) == ["bd-1", "bd-2"]
    # A pinned run never goes to another agent, even one that matches and is idle.
    others = await kit.services.dispatch.dispatch(
        [AgentCapacity(agent_id="bd-3", labels=label, commands=[CommandKind.BASH], free_slots=50)]
    )
    assert not {d.task.id for d in others} & {task.id for task in live}
    mine = await kit.services.dispatch.dispatch(
        [AgentCapacity(agent_id="bd-1", labels=label, commands=[CommandKind.BASH], free_slots=50)]
    )
    assert [d.task.config.target.agent_id for d in mine if d.task.schedule_id == schedule_id] == ["bd-1"]


async def test_flow_schedules_are_refused_and_daemons_take_no_window(kit: Kit) -> None:
    job = await kit.make_job()
    with pytest.raises(InvalidInput) as flow:
        await kit.services.schedules.create(ScheduleCreate(job_id=job.id, kind=ScheduleKind.FLOW))
    assert [problem.path for problem in flow.value.fields] == ["$.kind"]
    assert "POST /api/v1/flows/{flow_id}/run" in flow.value.fields[0].message
    with pytest.raises(InvalidInput) as window:
        await kit.services.schedules.create(
            ScheduleCreate(job_id=job.id, kind=ScheduleKind.DAEMON, max_count=3)
        )
    assert [problem.path for problem in window.value.fields] == ["$.max_count"]
