"""Broadcast fan-out and pinned tasks at the data layer, against a real PostgreSQL: a broadcast slot is one
task per matching online agent and generating it again makes nothing new, the slot counts once toward
max_count, the overlap policy judges each agent's copies on their own, and the claim never gives a pinned
task to another agent. The same with real agents: ``test_broadcast_e2e.py``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from schedulingfixtures import Kit, set_cursor, slot_records, slot_tasks

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind, ScheduleKind, SlotOutcome, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import AgentRegisterData
from hetuflow_core.schedule import ScheduleCreate
from hetuflow_core.task import TaskTrigger, TriggerRun
from hetuflow_server.service import AgentCapacity

pytestmark = pytest.mark.usefixtures("quiet_schedules")


async def online_agents(kit: Kit, count: int, **labels: str) -> list[str]:
    """Register ``count`` online bash agents carrying ``labels`` (plus a label of their own); their ids."""
    server_id = uuid7()
    await kit.services.servers.register(server_id, name="routing-test", address=None)
    ids = [f"route-{uuid7().hex[-12:]}" for _ in range(count)]
    for agent_id in ids:
        data = AgentRegisterData(
            agent_id=agent_id,
            name=agent_id,
            labels={**labels, "me": agent_id},
            capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=4),
        )
        await kit.services.agents.register(data, server_id=server_id, address=None)
    return ids


def capacity(agent_id: str, **labels: str) -> AgentCapacity:
    return AgentCapacity(
        agent_id=agent_id, labels={**labels, "me": agent_id}, commands=[CommandKind.BASH], free_slots=10
    )


def pool() -> dict[str, str]:
    return {"pool": uuid7().hex[-12:]}


async def broadcast_job(kit: Kit, labels: dict[str, str], **config: Any) -> UUID:
    job = await kit.make_job(target={"labels": labels, "routing": "broadcast"}, **config)
    return job.id


async def test_a_broadcast_slot_is_one_task_per_agent_and_generated_once(kit: Kit) -> None:
    labels = pool()
    agents = await online_agents(kit, 2, **labels)
    await online_agents(kit, 1, pool="elsewhere")
    job_id = await broadcast_job(kit, labels)
    start = datetime.now(UTC) + timedelta(seconds=30)
    schedule = await kit.services.schedules.create(
        ScheduleCreate(
            job_id=job_id, kind=ScheduleKind.INTERVAL, interval_secs=1, start_time=start, max_count=3
        )
    )
    generator = await kit.leading_generator(horizon_secs=120)
    report = await generator.cycle()
    assert report.tasks == 6
    tasks = await slot_tasks(kit.db, schedule.id)
    by_slot: dict[datetime, list[str]] = {}
    for task in tasks:
        by_slot.setdefault(task.scheduled_at, []).append(task.config["target"]["agent_id"])
    assert [sorted(pins) for pins in by_slot.values()] == [sorted(agents)] * 3
    assert (await kit.services.schedules.get(schedule.id)).fire_count == 3  # slots, not tasks

    # Generating the same slots again (a cursor moved back) makes nothing new and counts nothing twice.
    await set_cursor(kit.db, schedule.id, start - timedelta(seconds=1))
    again = await generator.cycle()
    assert (again.tasks, again.deduplicated) == (0, 3)
    assert len(await slot_tasks(kit.db, schedule.id)) == 6
    assert (await kit.services.schedules.get(schedule.id)).fire_count == 3
    # Disabling removes the planned copies and gives the slots back once each.
    await kit.services.schedules.disable(schedule.id)
    assert await slot_tasks(kit.db, schedule.id) == []
    assert (await kit.services.schedules.get(schedule.id)).fire_count == 0


async def test_forbid_judges_each_agents_copies_apart(kit: Kit) -> None:
    labels = pool()
    first, second = await online_agents(kit, 2, **labels)
    job_id = await broadcast_job(kit, labels, concurrency="forbid")
    at = (datetime.now(UTC) + timedelta(seconds=1.5)).replace(microsecond=0) + timedelta(seconds=1)
    schedule = await kit.services.schedules.create(
        ScheduleCreate(job_id=job_id, kind=ScheduleKind.ONCE, start_time=at)
    )
    await (await kit.leading_generator(horizon_secs=60)).cycle()
    await asyncio.sleep((at - datetime.now(UTC)).total_seconds() + 0.05)
    dispatched = await kit.services.dispatch.dispatch(
        [capacity(first, **labels), capacity(second, **labels)], lookahead_secs=0
    )
    mine = [d for d in dispatched if d.task.schedule_id == schedule.id]
    # Both copies of the slot start, each on its own agent: neither overlaps the other.
    assert sorted(d.instance.agent_id for d in mine) == sorted([first, second])
    assert {t.status for t in await slot_tasks(kit.db, schedule.id)} == {TaskStatus.DISPATCHED}
    [record] = await slot_records(kit.db, schedule.id)
    assert record.outcome is SlotOutcome.RAN  # one record for the slot, naming one of its tasks
    assert record.task_id in {d.task.id for d in mine}


async def test_a_pinned_task_is_claimed_only_for_its_agent(kit: Kit) -> None:
    labels = pool()
    pinned, other = await online_agents(kit, 2, **labels)
    job = await kit.make_job(target={"labels": labels, "agent_id": pinned})
    [task_id] = (await kit.services.jobs.trigger(job.id, TaskTrigger())).task_ids
    assert await kit.services.dispatch.dispatch([capacity(other, **labels)]) == []
    [dispatch] = await kit.services.dispatch.dispatch([capacity(other, **labels), capacity(pinned, **labels)])
    assert (dispatch.task.id, dispatch.instance.agent_id) == (task_id, pinned)


async def test_trigger_event_and_retry_of_a_broadcast_job(kit: Kit) -> None:
    labels = pool()
    agents = await online_agents(kit, 3, **labels)
    job_id = await broadcast_job(kit, labels)
    triggered = (await kit.services.jobs.trigger(job_id, TaskTrigger(parameters={"n": 1}))).task_ids
    pins = [(await kit.services.tasks.get(task_id)).config.target.agent_id for task_id in triggered]
    assert sorted(pin or "" for pin in pins) == sorted(agents)

    name = f"fan-{uuid7().hex[-8:]}"
    await kit.services.schedules.create(
        ScheduleCreate(job_id=job_id, kind=ScheduleKind.EVENT, event_name=name)
    )
    fired = (await kit.services.events.fire(name, {"k": "v"})).task_ids
    assert len(fired) == 3

    # A bulk trigger: one task per run and agent, each run's parameters on each of its copies.
    runs = [TriggerRun(parameters={"n": 2}), TriggerRun(parameters={"n": 3})]
    bulk = (await kit.services.jobs.trigger(job_id, TaskTrigger(runs=runs))).task_ids
    made = [await kit.services.tasks.get(task_id) for task_id in bulk]
    assert sorted((task.parameters["n"], task.config.target.agent_id or "") for task in made) == sorted(
        (n, agent) for n in (2, 3) for agent in agents
    )
    counted = (await kit.services.jobs.trigger(job_id, TaskTrigger(count=2))).task_ids
    assert len(set(counted)) == 6

    # A retried copy re-runs on its own agent only.
    copy = await kit.services.tasks.cancel(triggered[0])
    retried = await kit.services.tasks.retry(copy.task.id)
    assert retried.config.target.agent_id == copy.task.config.target.agent_id
    assert retried.parameters == {"n": 1}
