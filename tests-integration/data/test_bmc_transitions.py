"""The state machines of docs/architecture.md ("Task and attempt states"), exhaustively: every (from, to)
pair is applied when allowed and refused — changing nothing — when not, for tasks and for instances."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from uuid import UUID

import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.enums import CommandKind, InstanceStatus, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_server.infra import ModelManager, bmc, transitions

FINAL_TASK = {s.value for s in TaskStatus if s.is_final}


async def _new_task(db: ModelManager, job_id: UUID) -> tuple[UUID, UUID]:
    """A task with one instance (attempt 1) that is its current attempt."""
    task_id, instance_id = uuid7(), uuid7()
    async with db.transaction() as conn:
        await bmc.TaskBmc.insert_many(
            conn,
            [
                bmc.NewTask(
                    id=task_id,
                    job_id=job_id,
                    origin=bmc.TaskOrigin.MANUAL,
                    scheduled_at=datetime.now(UTC),
                    config=JobConfig(command=CommandKind.BASH, script="true"),
                )
            ],
            by=None,
        )
        await bmc.InstanceBmc.dispatch_many(
            conn,
            [
                bmc.NewInstance(
                    id=instance_id,
                    task_id=task_id,
                    job_id=job_id,
                    agent_id="agent-1",
                    attempt=1,
                    fire_at=datetime.now(UTC),
                )
            ],
        )
    return task_id, instance_id


def _force_task(url: str, task_id: UUID, instance_id: UUID, status: TaskStatus) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            b"UPDATE sched_task SET status = %s, instance_id = %s, attempt = 1,"
            b" completed_at = CASE WHEN %s THEN now() END,"
            b" next_attempt_at = CASE WHEN %s = 'waiting_retry' THEN now() END WHERE id = %s",
            (status.value, instance_id, status.value in FINAL_TASK, status.value, task_id),
        )


def _force_instance(url: str, instance_id: UUID, status: InstanceStatus) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            b"UPDATE sched_task_instance SET status = %s, completed_at = CASE WHEN %s THEN now() END"
            b" WHERE id = %s",
            (status.value, status.is_final, instance_id),
        )


def _status(url: str, table: str, key: UUID) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT status FROM {table} WHERE id = %s".encode(), (key,)).fetchone()
    assert row is not None
    return str(row[0])


def test_transition_tables_follow_design() -> None:
    t = transitions.is_allowed
    assert t(TaskStatus.PENDING, TaskStatus.DISPATCHED)
    assert t(TaskStatus.DISPATCHED, TaskStatus.RUNNING)
    assert all(
        t(TaskStatus.RUNNING, s) for s in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    )
    assert t(TaskStatus.WAITING_RETRY, TaskStatus.PENDING)
    assert not t(TaskStatus.PENDING, TaskStatus.RUNNING)
    assert not t(TaskStatus.PENDING, TaskStatus.SUCCEEDED)
    # Final states are never left.
    for final in (s for s in TaskStatus if s.is_final):
        assert not any(t(final, target) for target in TaskStatus)
    for done in (s for s in InstanceStatus if s.is_final):
        assert not any(t(done, target) for target in InstanceStatus)


@pytest.mark.parametrize(
    ("source", "target"), list(itertools.product(TaskStatus, TaskStatus)), ids=lambda s: s.value
)
async def test_task_transition(
    source: TaskStatus,
    target: TaskStatus,
    model_manager: ModelManager,
    make_job: MakeJob,
    migrated_database_url: str,
) -> None:
    job = await make_job()
    task_id, instance_id = await _new_task(model_manager, job.id)
    _force_task(migrated_database_url, task_id, instance_id, source)
    allowed = transitions.is_allowed(source, target)
    async with model_manager.transaction() as conn:
        changed = await bmc.TaskBmc.transition(
            conn,
            task_id,
            target,
            next_attempt_at=datetime.now(UTC) if target is TaskStatus.WAITING_RETRY else None,
        )
    assert (changed is not None) == allowed
    if changed is not None:
        task, previous = changed
        assert (task.status, previous) == (target, source)
        assert (task.completed_at is not None) == target.is_final
    assert _status(migrated_database_url, "sched_task", task_id) == (target if allowed else source).value


@pytest.mark.parametrize(
    ("source", "target"), list(itertools.product(InstanceStatus, InstanceStatus)), ids=lambda s: s.value
)
async def test_instance_transition(
    source: InstanceStatus,
    target: InstanceStatus,
    model_manager: ModelManager,
    make_job: MakeJob,
    migrated_database_url: str,
) -> None:
    job = await make_job()
    _, instance_id = await _new_task(model_manager, job.id)
    _force_instance(migrated_database_url, instance_id, source)
    report = bmc.ReportRow(instance_id=instance_id, agent_id="agent-1", status=target, exit_code=0)
    async with model_manager.transaction() as conn:
        changed = await bmc.InstanceBmc.transition_many(conn, [report])
    allowed = transitions.is_allowed(source, target)
    assert bool(changed) == allowed
    assert (
        _status(migrated_database_url, "sched_task_instance", instance_id)
        == (target if allowed else source).value
    )


async def test_batched_task_transitions_apply_only_allowed_rows(
    model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    a, ia = await _new_task(model_manager, job.id)
    b, ib = await _new_task(model_manager, job.id)
    c, ic = await _new_task(model_manager, job.id)
    _force_task(migrated_database_url, a, ia, TaskStatus.RUNNING)
    _force_task(migrated_database_url, b, ib, TaskStatus.PENDING)
    _force_task(migrated_database_url, c, ic, TaskStatus.RUNNING)
    async with model_manager.transaction() as conn:
        changed = await bmc.TaskBmc.transition_many(
            conn,
            [
                bmc.TaskChange(task_id=a, instance_id=ia, status=TaskStatus.SUCCEEDED),
                bmc.TaskChange(
                    task_id=b, instance_id=ib, status=TaskStatus.SUCCEEDED
                ),  # pending → succeeded: no
                bmc.TaskChange(
                    task_id=c, instance_id=uuid7(), status=TaskStatus.SUCCEEDED
                ),  # not current: no
            ],
        )
    assert [t.id for t in changed] == [a]
    assert _status(migrated_database_url, "sched_task", b) == "pending"
    assert _status(migrated_database_url, "sched_task", c) == "running"
    async with model_manager.transaction() as conn:
        with pytest.raises(ValueError, match="only once"):
            await bmc.TaskBmc.transition_many(
                conn,
                [
                    bmc.TaskChange(task_id=a, status=TaskStatus.FAILED),
                    bmc.TaskChange(task_id=a, status=TaskStatus.CANCELLED),
                ],
            )
