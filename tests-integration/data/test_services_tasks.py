"""TaskService and InstanceService: filtered cursor pages, cancel (with the agent command it publishes),
retry, attempts and logs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.api import TaskFilter
from hetuflow_core.enums import AgentCommandKind, CommandKind, InstanceStatus, LogStream, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.task import TaskTrigger
from hetuflow_server.errors import IllegalTransition, InvalidInput, NotFound
from hetuflow_server.infra import ModelManager, bmc, notify
from hetuflow_server.service import AgentCapacity, Services
from hetuflow_server.service.tasks import MAX_LOG_PAGE_BYTES

AGENT = AgentCapacity(agent_id="worker-1", labels={}, commands=list(CommandKind), free_slots=10_000)


def _path(exc: InvalidInput) -> str:
    return exc.fields[0].path


async def _dispatched(services: Services, job_id: UUID, *, running: bool = False) -> tuple[UUID, UUID]:
    (task_id,) = (await services.jobs.trigger(job_id, TaskTrigger())).task_ids
    (dispatch,) = [d for d in await services.dispatch.dispatch([AGENT]) if d.task.id == task_id]
    if running:
        report = TaskInstanceUpdatedData(
            instance_id=dispatch.instance.id, task_id=task_id, status=InstanceStatus.RUNNING
        )
        await services.dispatch.apply_reports([report], agent_id=AGENT.agent_id)
    return task_id, dispatch.instance.id


async def _finish(services: Services, task_id: UUID, instance_id: UUID, status: InstanceStatus) -> None:
    report = TaskInstanceUpdatedData(instance_id=instance_id, task_id=task_id, status=status, exit_code=0)
    await services.dispatch.apply_reports([report], agent_id=AGENT.agent_id)


async def test_pagination_returns_each_row_once_in_order(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    job = await make_job()
    base = datetime(2032, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    # Many rows share a scheduled_at, so the id tie-break matters.
    tasks = [
        bmc.NewTask(
            id=uuid7(),
            job_id=job.id,
            origin=bmc.TaskOrigin.MANUAL,
            scheduled_at=base + timedelta(seconds=rng.randrange(40)),
            config=job.config,
        )
        for _ in range(333)
    ]
    async with model_manager.transaction() as conn:
        await bmc.TaskBmc.insert_many(conn, tasks, by=None)
    seen: list[UUID] = []
    cursor = None
    pages = 0
    while True:
        page = await services.tasks.list(TaskFilter(job_id=job.id, cursor=cursor, limit=50))
        pages += 1
        seen.extend(task.id for task in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert pages == 7
    assert len(seen) == len(set(seen)) == 333
    expected = sorted(tasks, key=lambda t: (t.scheduled_at, t.id), reverse=True)
    assert seen == [t.id for t in expected]


async def test_filters_combine(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    other = await make_job()
    running_id, _ = await _dispatched(services, job.id, running=True)
    (pending_id,) = (await services.jobs.trigger(job.id, TaskTrigger())).task_ids
    (elsewhere,) = (await services.jobs.trigger(other.id, TaskTrigger())).task_ids

    async def ids(**filters: object) -> set[UUID]:
        return {t.id for t in (await services.tasks.list(TaskFilter(**filters))).items}  # type: ignore[arg-type]

    assert await ids(job_id=job.id) == {running_id, pending_id}
    assert await ids(job_id=job.id, status=["running"]) == {running_id}
    assert await ids(job_id=job.id, status=["running", "pending"]) == {running_id, pending_id}
    assert running_id in await ids(agent_id=AGENT.agent_id)
    assert pending_id not in await ids(agent_id=AGENT.agent_id)
    assert await ids(job_id=other.id, status=["pending"]) == {elsewhere}
    now = datetime.now(UTC)
    assert await ids(job_id=job.id, scheduled_after=now + timedelta(hours=1)) == set()
    assert await ids(job_id=job.id, scheduled_before=now + timedelta(hours=1)) == {running_id, pending_id}
    assert await ids(schedule_id=uuid7()) == set()


@pytest.mark.parametrize(
    ("filters", "path"),
    [
        ({"status": ["pending", "sleeping"]}, "$.status[1]"),
        ({"scheduled_after": datetime(2030, 1, 1)}, "$.scheduled_after"),
        ({"cursor": "AAAA"}, "$.cursor"),
        ({"limit": 5000}, "$.limit"),
    ],
)
async def test_bad_filters_name_the_field(filters: dict[str, object], path: str, services: Services) -> None:
    with pytest.raises(InvalidInput) as info:
        await services.tasks.list(TaskFilter(**filters))  # type: ignore[arg-type]
    assert _path(info.value) == path


async def test_unknown_task_is_not_found(services: Services) -> None:
    for call in (
        services.tasks.get(uuid7()),
        services.tasks.cancel(uuid7()),
        services.tasks.retry(uuid7()),
        services.tasks.list_instances(uuid7()),
        services.instances.get(uuid7()),
        services.instances.logs(uuid7()),
    ):
        with pytest.raises(NotFound):
            await call


async def test_cancel_pending_task_needs_no_agent(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    (task_id,) = (await services.jobs.trigger(job.id, TaskTrigger())).task_ids
    outcome = await services.tasks.cancel(task_id, by="erin")
    assert (outcome.task.status, outcome.instance_id, outcome.agent_id) == (TaskStatus.CANCELLED, None, None)
    assert outcome.task.error == "cancelled by erin"
    assert outcome.task.completed_at is not None
    with pytest.raises(IllegalTransition):
        await services.tasks.cancel(task_id)
    assert (await services.tasks.get(task_id)).error == "cancelled by erin"


async def test_cancel_running_task_tells_its_agent(
    services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    task_id, instance_id = await _dispatched(services, job.id, running=True)
    async with await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as listen:
        await listen.execute(f"LISTEN {notify.AGENT_CMD_CHANNEL}".encode())
        outcome = await services.tasks.cancel(task_id, reason="operator request")
        notes = [n async for n in listen.notifies(timeout=5, stop_after=1)]
    assert (outcome.instance_id, outcome.agent_id) == (instance_id, AGENT.agent_id)
    notice = notify.decode_agent_command(notes[0].payload)
    assert notice == notify.AgentCommandNotice(
        agent_id=AGENT.agent_id,
        command=AgentCommandKind.CANCEL,
        instance_id=instance_id,
        reason="operator request",
    )
    # The agent's report of the kill ends the instance; the task stays cancelled.
    await _finish(services, task_id, instance_id, InstanceStatus.CANCELLED)
    assert (await services.instances.get(instance_id)).status is InstanceStatus.CANCELLED
    assert (await services.tasks.get(task_id)).status is TaskStatus.CANCELLED


async def test_retry_creates_a_new_task(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    (task_id,) = (await services.jobs.trigger(job.id, TaskTrigger(parameters={"n": 1}, priority=4))).task_ids
    with pytest.raises(IllegalTransition):
        await services.tasks.retry(task_id)  # still pending
    await services.tasks.cancel(task_id)
    retried = await services.tasks.retry(task_id, by="frank")
    assert retried.id != task_id
    assert (retried.status, retried.attempt, retried.parameters, retried.priority, retried.job_id) == (
        TaskStatus.PENDING,
        0,
        {"n": 1},
        4,
        job.id,
    )
    assert (await services.tasks.get(task_id)).status is TaskStatus.CANCELLED  # the original stays final


async def test_succeeded_task_and_deleted_job_are_not_retried(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    task_id, instance_id = await _dispatched(services, job.id, running=True)
    await _finish(services, task_id, instance_id, InstanceStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        await services.tasks.retry(task_id)
    other, _ = await _dispatched(services, job.id, running=False)
    await services.tasks.cancel(other)
    await services.jobs.delete(job.id)
    with pytest.raises(IllegalTransition, match="deleted"):
        await services.tasks.retry(other)


async def test_instances_and_logs(services: Services, make_job: MakeJob) -> None:
    job = await make_job(retry={"max_retries": 1, "base_secs": 0})
    task_id, first = await _dispatched(services, job.id, running=True)
    await services.dispatch.apply_reports(
        [
            TaskInstanceUpdatedData(
                instance_id=first, task_id=task_id, status=InstanceStatus.FAILED, exit_code=3
            )
        ],
        agent_id=AGENT.agent_id,
    )
    (second,) = [d.instance.id for d in await services.dispatch.dispatch([AGENT]) if d.task.id == task_id]
    attempts = await services.tasks.list_instances(task_id)
    assert [(i.id, i.attempt, i.status) for i in attempts] == [
        (first, 1, InstanceStatus.FAILED),
        (second, 2, InstanceStatus.DISPATCHED),
    ]
    assert attempts[0].exit_code == 3

    chunks = [
        bmc.NewLogChunk(instance_id=second, stream=LogStream.STDOUT, seq=i, content=f"line {i}\n".encode())
        for i in range(5)
    ] + [bmc.NewLogChunk(instance_id=second, stream=LogStream.STDERR, seq=0, content=b"bad \xff\xfe bytes")]
    assert await services.dispatch.store_logs(chunks) == 6
    assert await services.dispatch.store_logs(chunks[:3]) == 0  # a resend is stored once
    unknown = bmc.NewLogChunk(instance_id=uuid7(), stream=LogStream.STDOUT, seq=0, content=b"x")
    assert await services.dispatch.store_logs([unknown]) == 0

    page = await services.instances.logs(second, after_seq=0, limit=4)
    assert [e.content for e in page.items] == [f"line {i}\n" for i in range(4)]
    rest = await services.instances.logs(second, after_seq=page.next_after_seq)
    assert [(e.stream, e.content) for e in rest.items] == [
        (LogStream.STDOUT, "line 4\n"),
        (LogStream.STDERR, "bad \ufffd\ufffd bytes"),
    ]
    tail = await services.instances.logs(second, after_seq=rest.next_after_seq)
    assert (tail.items, tail.next_after_seq) == ([], rest.next_after_seq)
    with pytest.raises(InvalidInput):
        await services.instances.logs(second, after_seq=-1)


async def test_an_attempt_stores_its_log_up_to_its_quota_then_one_marker(
    model_manager: ModelManager, make_job: MakeJob
) -> None:
    quota = bmc.LogQuota(max_bytes=250, grace_secs=300)
    services = Services(model_manager, log_quota=quota)
    _, instance_id = await _dispatched(services, (await make_job()).id, running=True)

    def chunk(seq: int, size: int = 100) -> bmc.NewLogChunk:
        return bmc.NewLogChunk(instance_id=instance_id, stream=LogStream.STDOUT, seq=seq, content=b"x" * size)

    assert await services.dispatch.store_logs([chunk(0), chunk(1)]) == 2
    # The chunk that crosses 250 bytes becomes the marker; what follows it, in the batch or later, is dropped.
    assert await services.dispatch.store_logs([chunk(2), chunk(3, size=1)]) == 1
    assert await services.dispatch.store_logs([chunk(4, size=1)]) == 0
    contents = [entry.content for entry in (await services.instances.logs(instance_id)).items]
    assert contents == ["x" * 100, "x" * 100, quota.marker.decode()]
    assert "250 bytes" in contents[-1]


async def test_chunks_of_an_attempt_that_ended_are_kept_only_within_the_grace(
    model_manager: ModelManager, make_job: MakeJob
) -> None:
    services = Services(model_manager, log_quota=bmc.LogQuota(max_bytes=1 << 20, grace_secs=0))
    job = await make_job()
    task_id, instance_id = await _dispatched(services, job.id, running=True)
    await _finish(services, task_id, instance_id, InstanceStatus.SUCCEEDED)
    late = [
        bmc.NewLogChunk(instance_id=instance_id, stream=LogStream.STDOUT, seq=seq, content=b"late\n")
        for seq in range(20)
    ]
    assert await services.dispatch.store_logs(late) == 0
    assert (await services.instances.logs(instance_id)).items == []

    generous = Services(model_manager, log_quota=bmc.LogQuota(max_bytes=1 << 20, grace_secs=3600))
    assert await generous.dispatch.store_logs(late[:1]) == 1  # a resend shortly after the end still counts


async def test_a_log_page_is_bounded_in_bytes_and_the_cursor_continues(
    services: Services, make_job: MakeJob
) -> None:
    _, instance_id = await _dispatched(services, (await make_job()).id, running=True)
    size = 300 * 1024
    chunks = [
        bmc.NewLogChunk(
            instance_id=instance_id, stream=LogStream.STDOUT, seq=seq, content=bytes([65 + seq]) * size
        )
        for seq in range(10)
    ]
    assert await services.dispatch.store_logs(chunks) == 10
    pages: list[list[str]] = []
    after = 0
    while True:
        page = await services.instances.logs(instance_id, after_seq=after, limit=10_000)
        if not page.items:
            break
        assert sum(len(entry.content) for entry in page.items) <= MAX_LOG_PAGE_BYTES + size
        pages.append([entry.content for entry in page.items])
        after = page.next_after_seq
    assert len(pages) > 1
    assert [content for page in pages for content in page] == [chunk.content.decode() for chunk in chunks]


async def test_config_of_claimed_task_drives_dispatch(services: Services, make_job: MakeJob) -> None:
    job = await make_job(command="python", script="print(1)")
    (task_id,) = (await services.jobs.trigger(job.id, TaskTrigger())).task_ids
    bash_only = AgentCapacity(agent_id="bash-only", labels={}, commands=[CommandKind.BASH], free_slots=100)
    assert task_id not in {d.task.id for d in await services.dispatch.dispatch([bash_only])}
    assert (await services.tasks.get(task_id)).status is TaskStatus.PENDING
    assert (
        JobConfig(command=CommandKind.PYTHON, script="print(1)") == (await services.tasks.get(task_id)).config
    )
