"""JobService against a real database: create, read, page, patch, enable/disable, delete and trigger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import msgspec
import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.enums import CommandKind, JobStatus, ScheduleKind, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig, JobCreate, JobUpdate, RetryPolicy
from hetuflow_core.schedule import ScheduleCreate
from hetuflow_core.task import TaskTrigger, TriggerRun
from hetuflow_server.errors import Conflict, InvalidInput, NotFound
from hetuflow_server.infra import ModelManager, bmc, notify
from hetuflow_server.service import Services


@pytest.fixture
async def listen(migrated_database_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A raw connection LISTENing on the work and schedule channels."""
    conn = await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True)
    await conn.execute(f"LISTEN {notify.WORK_CHANNEL}".encode())
    await conn.execute(f"LISTEN {notify.SCHEDULE_CHANNEL}".encode())
    try:
        yield conn
    finally:
        await conn.close()


async def _channels(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> set[str]:
    return {n.channel async for n in conn.notifies(timeout=1.0, stop_after=2)}


def _path(exc: InvalidInput) -> str:
    return exc.fields[0].path


async def test_create_and_get(services: Services) -> None:
    job = await services.jobs.create(
        JobCreate(
            name="nightly", description="d", config=JobConfig(command=CommandKind.BASH, script="echo hi")
        ),
        by="alice",
    )
    assert (job.namespace, job.name, job.status, job.created_by) == (
        "default",
        "nightly",
        JobStatus.ENABLED,
        "alice",
    )
    assert job.config.script == "echo hi"
    assert await services.jobs.get(job.id) == job


async def test_duplicate_name_conflicts_only_within_namespace(services: Services) -> None:
    config = JobConfig(command=CommandKind.BASH, script="true")
    await services.jobs.create(JobCreate(name="dup", config=config))
    with pytest.raises(Conflict, match="already exists"):
        await services.jobs.create(JobCreate(name="dup", config=config))
    other = await services.jobs.create(JobCreate(name="dup", namespace="other", config=config))
    assert other.namespace == "other"


@pytest.mark.parametrize(
    ("config", "path"),
    [
        (JobConfig(command=CommandKind.BASH), "$.config.script"),
        (JobConfig(command=CommandKind.UV), "$.config.script"),
        (JobConfig(command=CommandKind.CARGO), "$.config.args"),
        (JobConfig(command=CommandKind.CARGO, args=["run"], script="x"), "$.config.script"),
        (
            JobConfig(command=CommandKind.BASH, script="true", retry=RetryPolicy(base_secs=10, max_secs=1)),
            "$.config.retry.max_secs",
        ),
        (JobConfig(command=CommandKind.BASH, script="true", timeout_secs=-1), "$.config.timeout_secs"),
        (JobConfig(command=CommandKind.BASH, script="true", env={"1BAD": "x"}), "$.config.env"),
    ],
)
async def test_invalid_config_names_the_field(config: JobConfig, path: str, services: Services) -> None:
    with pytest.raises(InvalidInput) as info:
        await services.jobs.create(JobCreate(name="bad", config=config))
    assert _path(info.value) == path


async def test_invalid_name_names_the_field(services: Services) -> None:
    with pytest.raises(InvalidInput) as info:
        await services.jobs.create(
            JobCreate(name="no spaces", config=JobConfig(command=CommandKind.BASH, script="true"))
        )
    assert _path(info.value) == "$.name"


async def test_get_unknown_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        await services.jobs.get(uuid7())


async def test_list_pages_each_job_once(services: Services, make_job: MakeJob) -> None:
    made = {(await make_job(namespace="paging")).id for _ in range(23)}
    seen: list[UUID] = []
    cursor = None
    while True:
        page = await services.jobs.list(namespace="paging", cursor=cursor, limit=5)
        assert len(page.items) <= 5
        seen.extend(job.id for job in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == made
    assert seen == sorted(seen)  # creation order


@pytest.mark.parametrize(("cursor", "limit", "path"), [("garbage!", 10, "$.cursor"), (None, 0, "$.limit")])
async def test_list_refuses_bad_cursor_and_limit(
    cursor: str | None, limit: int, path: str, services: Services
) -> None:
    with pytest.raises(InvalidInput) as info:
        await services.jobs.list(cursor=cursor, limit=limit)
    assert _path(info.value) == path


async def test_patch_changes_only_given_fields(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    updated = await services.jobs.update(job.id, JobUpdate(description="new"), by="bob")
    assert updated.description == "new"
    assert (updated.name, updated.config, updated.created_by, updated.updated_by) == (
        job.name,
        job.config,
        "tests",
        "bob",
    )
    config = JobConfig(command=CommandKind.PYTHON, script="print(1)", priority=5)
    assert (await services.jobs.update(job.id, JobUpdate(config=config))).config == config
    with pytest.raises(InvalidInput):
        await services.jobs.update(job.id, JobUpdate(config=JobConfig(command=CommandKind.UV)))
    with pytest.raises(NotFound):
        await services.jobs.update(uuid7(), JobUpdate(description="x"))


async def test_rename_onto_existing_name_conflicts(services: Services, make_job: MakeJob) -> None:
    first = await make_job()
    second = await make_job()
    with pytest.raises(Conflict):
        await services.jobs.update(second.id, JobUpdate(name=first.name))
    assert (await services.jobs.get(second.id)).name == second.name


async def _scheduled_task(db: ModelManager, job_id: object, schedule_id: object, at: datetime) -> object:
    task_id = uuid7()
    async with db.transaction() as conn:
        await bmc.TaskBmc.insert_many(
            conn,
            [
                bmc.NewTask(
                    id=task_id,
                    job_id=job_id,  # type: ignore[arg-type]
                    origin=bmc.TaskOrigin.SCHEDULE,
                    schedule_id=schedule_id,  # type: ignore[arg-type]
                    scheduled_at=at,
                    config=JobConfig(command=CommandKind.BASH, script="true"),
                )
            ],
            by=None,
        )
    return task_id


async def test_disable_removes_future_scheduled_tasks_only(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=60)
    )
    now = datetime.now(UTC)
    due = await _scheduled_task(model_manager, job.id, schedule.id, now - timedelta(minutes=1))
    future = await _scheduled_task(model_manager, job.id, schedule.id, now + timedelta(minutes=5))
    manual = (
        await services.jobs.trigger(job.id, TaskTrigger(scheduled_at=now + timedelta(minutes=5)))
    ).task_ids[0]
    disabled = await services.jobs.disable(job.id)
    assert disabled.status is JobStatus.DISABLED
    with pytest.raises(NotFound):
        await services.tasks.get(future)  # type: ignore[arg-type]
    assert (await services.tasks.get(due)).status is TaskStatus.PENDING  # type: ignore[arg-type]
    assert (await services.tasks.get(manual)).status is TaskStatus.PENDING
    assert (await services.jobs.disable(job.id)).status is JobStatus.DISABLED  # idempotent
    assert (await services.jobs.enable(job.id)).status is JobStatus.ENABLED


async def test_delete_is_soft_and_cancels_unstarted_work(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.CRON, cron_expression="* * * * *")
    )
    (pending,) = (await services.jobs.trigger(job.id, TaskTrigger())).task_ids
    await services.jobs.delete(job.id, by="carol")
    with pytest.raises(NotFound):
        await services.jobs.get(job.id)
    with pytest.raises(NotFound):
        await services.jobs.delete(job.id)
    task = await services.tasks.get(pending)
    assert (task.status, task.error) == (TaskStatus.CANCELLED, "job deleted")
    assert (await services.schedules.get(schedule.id)).status.value == "disabled"
    # The name is free again.
    again = await services.jobs.create(JobCreate(name=job.name, config=job.config))
    assert again.id != job.id
    with pytest.raises(NotFound):
        await services.jobs.trigger(job.id, TaskTrigger())


async def test_trigger_creates_a_task_with_parameters_and_notifies(
    services: Services,
    make_job: MakeJob,
    listen: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    job = await make_job(priority=7)
    await _channels(listen)  # drain the job's creation notice
    result = await services.jobs.trigger(job.id, TaskTrigger(parameters={"day": "mon"}), by="dave")
    assert await _channels(listen) == {notify.WORK_CHANNEL}
    (task_id,) = result.task_ids
    task = await services.tasks.get(task_id)
    assert (task.job_id, task.parameters, task.priority, task.status, task.attempt) == (
        job.id,
        {"day": "mon"},
        7,
        TaskStatus.PENDING,
        0,
    )
    assert task.config == job.config
    override = await services.jobs.trigger(job.id, TaskTrigger(priority=-3))
    assert (await services.tasks.get(override.task_ids[0])).priority == -3


async def test_trigger_refuses_naive_time(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    with pytest.raises(InvalidInput) as info:
        await services.jobs.trigger(job.id, TaskTrigger(scheduled_at=datetime(2030, 1, 1)))
    assert _path(info.value) == "$.scheduled_at"


async def test_disabled_job_can_still_be_triggered(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    await services.jobs.disable(job.id)
    assert len((await services.jobs.trigger(job.id, TaskTrigger())).task_ids) == 1


async def test_config_snapshot_survives_job_edits(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    (task_id,) = (await services.jobs.trigger(job.id, TaskTrigger())).task_ids
    await services.jobs.update(
        job.id, JobUpdate(config=JobConfig(command=CommandKind.BASH, script="echo changed"))
    )
    assert (await services.tasks.get(task_id)).config.script == "true"
    assert msgspec.json.encode((await services.tasks.get(task_id)).config) == msgspec.json.encode(job.config)


async def _wait_blocked_on_lock(database_url: str) -> None:
    """Return once some session of the database waits for a row lock."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watcher:
        for _ in range(500):
            cur = await watcher.execute(
                b"SELECT count(*) FROM pg_stat_activity"
                b" WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            if row is not None and row[0]:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("nobody waited for the lock")


async def test_trigger_waits_for_a_delete_in_progress_and_makes_nothing(
    services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    async with await psycopg.AsyncConnection.connect(migrated_database_url) as deleting:
        # What a delete holds until it commits: the job's row, locked for update.
        await deleting.execute(b"SELECT 1 FROM sched_job WHERE id = %s FOR NO KEY UPDATE", (job.id,))
        trigger = asyncio.create_task(services.jobs.trigger(job.id, TaskTrigger(count=3)))
        await _wait_blocked_on_lock(migrated_database_url)
        await deleting.execute(b"UPDATE sched_job SET deleted_at = now() WHERE id = %s", (job.id,))
        await deleting.commit()
    with pytest.raises(NotFound):
        await trigger
    async with services.db.transaction() as conn:
        assert await bmc.TaskBmc.select_page(conn, job_id=job.id, limit=10) == []


async def test_delete_waits_for_a_trigger_in_progress_and_cancels_its_tasks(
    services: Services, make_job: MakeJob, model_manager: ModelManager, migrated_database_url: str
) -> None:
    job = await make_job()
    runs = [bmc.ManualRun(id=uuid7(), scheduled_at=datetime.now(UTC), priority=None, parameters={})]
    async with model_manager.transaction() as conn:
        # The trigger's statement, held open: the delete must wait for it rather than miss its task.
        assert await bmc.TaskBmc.insert_triggered(conn, job.id, runs, by=None, channel=notify.WORK_CHANNEL)
        delete = asyncio.create_task(services.jobs.delete(job.id))
        await _wait_blocked_on_lock(migrated_database_url)
    await delete
    task = await services.tasks.get(runs[0].id)
    assert (task.status, task.error) == (TaskStatus.CANCELLED, "job deleted")


async def test_bulk_trigger_makes_every_task_in_one_go(
    services: Services,
    make_job: MakeJob,
    listen: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    job = await make_job(priority=4)
    await _channels(listen)
    at = datetime.now(UTC) + timedelta(hours=1)
    result = await services.jobs.trigger(job.id, TaskTrigger(count=500, parameters={"k": 1}, scheduled_at=at))
    assert await _channels(listen) == {notify.WORK_CHANNEL}
    assert len(set(result.task_ids)) == 500
    tasks = [await services.tasks.get(task_id) for task_id in result.task_ids[::50]]
    assert {(t.parameters["k"], t.priority, t.scheduled_at, t.status) for t in tasks} == {
        (1, 4, at, TaskStatus.PENDING)
    }
    with pytest.raises(InvalidInput) as info:
        await services.jobs.trigger(job.id, TaskTrigger(runs=[TriggerRun(scheduled_at=datetime(2030, 1, 1))]))
    assert _path(info.value) == "$.runs[0].scheduled_at"
    with pytest.raises(NotFound):
        await services.jobs.trigger(uuid7(), TaskTrigger(count=2))
