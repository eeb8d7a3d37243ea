"""DispatchService: claims within capacity and labels, status reports in batches, retries with backoff, late
reports, state sync and liveness."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.enums import CommandKind, InstanceStatus, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.task import TaskTrigger
from hetuflow_server.infra import ModelManager, notify
from hetuflow_server.service import AgentCapacity, Dispatch, DispatchService, ReportOutcome, Services
from hetuflow_server.service.reports import MAX_REPORTED_LEAD

_pools = itertools.count()


def _pool() -> str:
    """A label value of one test only: tests sharing the module database never claim each other's tasks."""
    return f"pool-{next(_pools)}"


def _agent(agent_id: str, pool: str, *, free: int, load: int = 0, **labels: str) -> AgentCapacity:
    return AgentCapacity(
        agent_id=agent_id,
        labels={"pool": pool, **labels},
        commands=[CommandKind.BASH],
        free_slots=free,
        load=load,
    )


def _report(
    task_id: UUID, instance_id: UUID, status: InstanceStatus, seq: int = 0, **fields: object
) -> TaskInstanceUpdatedData:
    return TaskInstanceUpdatedData(instance_id=instance_id, task_id=task_id, status=status, seq=seq, **fields)  # type: ignore[arg-type]


async def _trigger(services: Services, job_id: UUID, n: int = 1, **fields: object) -> list[UUID]:
    ids: list[UUID] = []
    for _ in range(n):
        ids.extend((await services.jobs.trigger(job_id, TaskTrigger(**fields))).task_ids)  # type: ignore[arg-type]
    return ids


async def test_capacity_and_least_loaded_agent(services: Services, make_job: MakeJob) -> None:
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}})
    await _trigger(services, job.id, 8)
    agents = [_agent("busy", pool, free=2, load=1), _agent("idle", pool, free=2)]
    dispatched = await services.dispatch.dispatch(agents)
    assert Counter(d.instance.agent_id for d in dispatched) == {"busy": 2, "idle": 2}
    assert dispatched[0].instance.agent_id == "idle"  # least loaded first
    assert all(d.task.status is TaskStatus.DISPATCHED and d.task.attempt == 1 for d in dispatched)
    assert all(d.task.instance_id == d.instance.id and d.instance.attempt == 1 for d in dispatched)
    assert await services.dispatch.dispatch([_agent("full", pool, free=0)]) == []


async def test_label_routing(services: Services, make_job: MakeJob) -> None:
    pool = _pool()
    gpu_job = await make_job(target={"labels": {"pool": pool, "gpu": "yes"}})
    (task_id,) = await _trigger(services, gpu_job.id)
    assert await services.dispatch.dispatch([_agent("cpu", pool, free=5, gpu="no")]) == []
    assert (await services.tasks.get(task_id)).status is TaskStatus.PENDING
    (dispatch,) = await services.dispatch.dispatch(
        [_agent("cpu", pool, free=5), _agent("gpu", pool, free=5, gpu="yes")]
    )
    assert (dispatch.task.id, dispatch.instance.agent_id) == (task_id, "gpu")


async def test_priority_then_due_time(services: Services, make_job: MakeJob) -> None:
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}})
    now = datetime.now(UTC)
    (old_low,) = await _trigger(services, job.id, scheduled_at=now - timedelta(minutes=5), priority=0)
    (new_high,) = await _trigger(services, job.id, scheduled_at=now - timedelta(minutes=1), priority=10)
    (old_high,) = await _trigger(services, job.id, scheduled_at=now - timedelta(minutes=2), priority=10)
    order = [d.task.id for d in await services.dispatch.dispatch([_agent("one", pool, free=1)]) for _ in [0]]
    order += [d.task.id for d in await services.dispatch.dispatch([_agent("one", pool, free=1)])]
    order += [d.task.id for d in await services.dispatch.dispatch([_agent("one", pool, free=1)])]
    assert order == [old_high, new_high, old_low]


async def test_lookahead(services: Services, make_job: MakeJob) -> None:
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}})
    soon_at = datetime.now(UTC) + timedelta(seconds=3)
    (soon,) = await _trigger(services, job.id, scheduled_at=soon_at)
    (later,) = await _trigger(services, job.id, scheduled_at=datetime.now(UTC) + timedelta(minutes=1))
    (dispatch,) = await services.dispatch.dispatch([_agent("a", pool, free=5)], lookahead_secs=5)
    assert dispatch.task.id == soon
    assert dispatch.fire_at == soon_at  # the agent waits for the due time
    assert (await services.tasks.get(later)).status is TaskStatus.PENDING


async def test_reports_apply_in_seq_order_and_are_idempotent(
    services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}})
    await _trigger(services, job.id)
    (d,) = await services.dispatch.dispatch([_agent("w", pool, free=1)])
    running = _report(d.task.id, d.instance.id, InstanceStatus.RUNNING, seq=1)
    done = _report(d.task.id, d.instance.id, InstanceStatus.SUCCEEDED, seq=2, exit_code=0, output="ok\n")
    async with await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as listen:
        await listen.execute(f"LISTEN {notify.WORK_CHANNEL}".encode())
        results = await services.dispatch.apply_reports(
            [done, running], agent_id="w"
        )  # out of order in the batch
        notes = [n.channel async for n in listen.notifies(timeout=5, stop_after=1)]
    assert notes == [notify.WORK_CHANNEL]  # capacity was freed
    assert [r.outcome for r in results] == [ReportOutcome.APPLIED, ReportOutcome.APPLIED]
    assert results[0].task is not None
    assert results[0].task.status is TaskStatus.SUCCEEDED
    instance = await services.instances.get(d.instance.id)
    assert (instance.status, instance.exit_code, instance.output) == (InstanceStatus.SUCCEEDED, 0, "ok\n")
    assert instance.started_at is not None
    assert instance.completed_at is not None
    again = await services.dispatch.apply_reports([running, done], agent_id="w")
    assert [r.outcome for r in again] == [ReportOutcome.LATE, ReportOutcome.DUPLICATE]
    assert (await services.tasks.get(d.task.id)).status is TaskStatus.SUCCEEDED
    refused = await services.dispatch.apply_reports(
        [
            _report(d.task.id, d.instance.id, InstanceStatus.FAILED),
            _report(d.task.id, uuid7(), InstanceStatus.RUNNING),
        ],
        agent_id="intruder",
    )
    assert [r.outcome for r in refused] == [ReportOutcome.REFUSED, ReportOutcome.REFUSED]


async def test_nonzero_exit_is_failed_and_retried_with_growing_delays(
    model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    services = Services(model_manager)
    dispatcher = DispatchService(model_manager, rand=lambda: 0.0)
    pool = _pool()
    job = await make_job(
        target={"labels": {"pool": pool}}, retry={"max_retries": 2, "base_secs": 10, "max_secs": 100}
    )
    (task_id,) = await _trigger(services, job.id)
    agent = _agent("r", pool, free=1)
    delays = []
    for attempt in (1, 2, 3):
        (d,) = await dispatcher.dispatch([agent])
        assert (d.task.id, d.instance.attempt) == (task_id, attempt)
        before = datetime.now(UTC)
        reports = [
            _report(task_id, d.instance.id, InstanceStatus.RUNNING, seq=1),
            _report(task_id, d.instance.id, InstanceStatus.SUCCEEDED, seq=2, exit_code=2),  # non-zero: failed
        ]
        _, result = await dispatcher.apply_reports(reports, agent_id="r")
        assert (await services.instances.get(d.instance.id)).status is InstanceStatus.FAILED
        task = result.task
        assert task is not None
        if attempt < 3:
            assert task.status is TaskStatus.WAITING_RETRY
            assert task.next_attempt_at is not None
            delays.append((task.next_attempt_at - before).total_seconds())
            assert await dispatcher.dispatch([agent]) == []  # backoff not over
            with psycopg.connect(migrated_database_url) as conn:
                conn.execute(
                    b"UPDATE sched_task SET next_attempt_at = now() - interval '1 second' WHERE id = %s",
                    (task_id,),
                )
        else:
            assert (task.status, task.error) == (TaskStatus.FAILED, "exit code 2")
    assert delays[0] == pytest.approx(10, abs=2)
    assert delays[1] == pytest.approx(20, abs=2)
    assert [i.attempt for i in await services.tasks.list_instances(task_id)] == [1, 2, 3]


async def test_late_report_of_a_lost_instance_is_stored_not_applied(
    services: Services, make_job: MakeJob
) -> None:
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}})
    await _trigger(services, job.id)
    (d,) = await services.dispatch.dispatch([_agent("gone", pool, free=1)])
    await services.dispatch.apply_reports(
        [_report(d.task.id, d.instance.id, InstanceStatus.RUNNING)], agent_id="gone"
    )
    (lost,) = await services.dispatch.mark_lost([d.instance.id], reason="agent vanished")
    assert lost.outcome is ReportOutcome.APPLIED
    assert lost.task is not None
    assert (lost.task.status, lost.task.error) == (TaskStatus.FAILED, "agent vanished")
    (late,) = await services.dispatch.apply_reports(
        [_report(d.task.id, d.instance.id, InstanceStatus.SUCCEEDED, exit_code=0, output="done")],
        agent_id="gone",
    )
    assert late.outcome is ReportOutcome.LATE
    instance = await services.instances.get(d.instance.id)
    assert (instance.status, instance.output) == (InstanceStatus.LOST, "done")
    assert (await services.tasks.get(d.task.id)).status is TaskStatus.FAILED


async def test_report_for_a_superseded_attempt_never_moves_the_task(
    services: Services, make_job: MakeJob
) -> None:
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}}, retry={"max_retries": 1, "base_secs": 0})
    await _trigger(services, job.id)
    agent = _agent("s", pool, free=1)
    (first,) = await services.dispatch.dispatch([agent])
    await services.dispatch.mark_lost([first.instance.id], reason="lost")
    (second,) = await services.dispatch.dispatch([agent])
    assert second.instance.attempt == 2
    # The first attempt's agent comes back and reports: the instance is final (lost), the task follows attempt
    # 2.
    await services.dispatch.apply_reports(
        [_report(first.task.id, first.instance.id, InstanceStatus.RUNNING)], agent_id="s"
    )
    assert (await services.tasks.get(first.task.id)).status is TaskStatus.DISPATCHED


async def test_reconcile_keeps_kills_and_loses(services: Services, make_job: MakeJob) -> None:
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}}, retry={"max_retries": 3, "base_secs": 0})
    await _trigger(services, job.id, 2)
    kept, forgotten = await services.dispatch.dispatch([_agent("sync", pool, free=2)])
    stranger = uuid7()
    outcome = await services.dispatch.reconcile("sync", [kept.instance.id, stranger])
    assert (outcome.keep, outcome.kill, outcome.lost) == (
        [kept.instance.id],
        [stranger],
        [forgotten.instance.id],
    )
    assert (await services.instances.get(forgotten.instance.id)).status is InstanceStatus.LOST
    assert (await services.tasks.get(forgotten.task.id)).status is TaskStatus.WAITING_RETRY
    assert [i.id for i in await services.dispatch.live_instances("sync")] == [kept.instance.id]


async def test_silent_agent_loses_its_started_attempts_and_hands_back_the_others(
    services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    from hetuflow_core.agent import AgentCapabilities
    from hetuflow_core.protocol import AgentRegisterData

    pool = _pool()
    server = await services.servers.register(uuid7(), name="s", address=None)
    await services.agents.register(
        AgentRegisterData(
            agent_id="silent",
            name="silent",
            capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=2),
        ),
        server_id=server.id,
        address=None,
    )
    job = await make_job(target={"labels": {"pool": pool}})
    await _trigger(services, job.id, 2)
    started, unstarted = await services.dispatch.dispatch([_agent("silent", pool, free=2)])
    await services.dispatch.apply_reports(
        [_report(started.task.id, started.instance.id, InstanceStatus.RUNNING)], agent_id="silent"
    )
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute(
            b"UPDATE sched_agent SET last_heartbeat_at = now() - interval '1 minute' WHERE id = 'silent'"
        )
    assert await services.dispatch.reap_offline_agents(timeout_secs=15) == ["silent"]
    # Started: lost, and with no retries left the task fails.
    assert (await services.instances.get(started.instance.id)).status is InstanceStatus.LOST
    task = await services.tasks.get(started.task.id)
    assert task.status is TaskStatus.FAILED
    assert task.error is not None
    assert "silent" in task.error
    # Never started: handed back, due again at once although the job has no retries.
    assert (await services.instances.get(unstarted.instance.id)).status is InstanceStatus.LOST
    task = await services.tasks.get(unstarted.task.id)
    assert task.status is TaskStatus.WAITING_RETRY
    assert task.error is not None
    assert "never started" in task.error
    assert await services.dispatch.reap_offline_agents(timeout_secs=15) == []


async def test_a_start_and_an_end_in_one_batch_give_each_report_its_own_outcome(
    services: Services, make_job: MakeJob
) -> None:
    # Applied together (one row change) while the attempt is dispatched, one by one otherwise.
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}})
    await _trigger(services, job.id, 3)
    fresh, started, other = await services.dispatch.dispatch([_agent("m", pool, free=3)])
    began = datetime.now(UTC) - timedelta(seconds=5)
    ended = began + timedelta(seconds=2)

    def pair(d: Dispatch, *, end: InstanceStatus = InstanceStatus.SUCCEEDED) -> list[TaskInstanceUpdatedData]:
        return [
            _report(d.task.id, d.instance.id, InstanceStatus.RUNNING, seq=1, at=began),
            _report(d.task.id, d.instance.id, end, seq=2, at=ended, exit_code=0, output="out"),
        ]

    await services.dispatch.apply_reports(pair(started)[:1], agent_id="m")  # its start is already stored
    results = await services.dispatch.apply_reports(
        [*pair(fresh), *pair(started), *pair(other, end=InstanceStatus.CANCELLED)], agent_id="m"
    )
    assert [r.outcome for r in results] == [
        ReportOutcome.APPLIED,
        ReportOutcome.APPLIED,
        ReportOutcome.DUPLICATE,
        ReportOutcome.APPLIED,
        ReportOutcome.APPLIED,
        ReportOutcome.APPLIED,
    ]
    assert [r.task.status if r.task else None for r in results[1::2]] == [
        TaskStatus.SUCCEEDED,
        TaskStatus.SUCCEEDED,
        TaskStatus.CANCELLED,
    ]
    for d in (fresh, started):
        instance = await services.instances.get(d.instance.id)
        assert (instance.status, instance.started_at, instance.completed_at, instance.output) == (
            InstanceStatus.SUCCEEDED,
            began,
            ended,
            "out",
        )
    # Another agent's pair moves nothing, and a pair after the end is late.
    refused = await services.dispatch.apply_reports(pair(other), agent_id="intruder")
    assert [r.outcome for r in refused] == [ReportOutcome.REFUSED, ReportOutcome.REFUSED]
    late = await services.dispatch.apply_reports(pair(other), agent_id="m")
    assert [r.outcome for r in late] == [ReportOutcome.LATE, ReportOutcome.LATE]
    assert (await services.tasks.get(other.task.id)).status is TaskStatus.CANCELLED


async def test_a_retry_backoff_counts_from_the_reported_end_within_a_second_of_the_servers_clock(
    model_manager: ModelManager, make_job: MakeJob
) -> None:
    dispatcher = DispatchService(model_manager, rand=lambda: 0.0)
    pool = _pool()
    job = await make_job(target={"labels": {"pool": pool}}, retry={"max_retries": 5, "base_secs": 10})
    services = Services(model_manager)
    leads = [(timedelta(seconds=0.5), timedelta(seconds=0.5)), (timedelta(hours=1), MAX_REPORTED_LEAD)]
    for lead, counted in leads:
        (task_id,) = await _trigger(services, job.id)
        (d,) = await dispatcher.dispatch([_agent("b", pool, free=1)])
        before = datetime.now(UTC)
        ended = _report(task_id, d.instance.id, InstanceStatus.FAILED, seq=1, at=before + lead, exit_code=1)
        (result,) = await dispatcher.apply_reports([ended], agent_id="b")
        assert result.task is not None
        assert result.task.next_attempt_at is not None
        waited = result.task.next_attempt_at - before
        assert counted + timedelta(seconds=10) <= waited < counted + timedelta(seconds=11)
