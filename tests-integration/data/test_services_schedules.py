"""ScheduleService and the generator's statements: validation by field path, replanning on change, slot
records, idempotent slot tasks and lease-fenced cursor moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.enums import CommandKind, ScheduleKind, ScheduleStatus, SlotOutcome, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.schedule import ScheduleCreate, ScheduleUpdate
from hetuflow_server.errors import InvalidInput, NotFound
from hetuflow_server.infra import ModelManager, bmc
from hetuflow_server.service import Services


def _path(exc: InvalidInput) -> str:
    return exc.fields[0].path


async def _slot_task(db: ModelManager, job_id: UUID, schedule_id: UUID, at: datetime) -> list[UUID]:
    async with db.transaction() as conn:
        created = await bmc.TaskBmc.insert_many(
            conn,
            [
                bmc.NewTask(
                    id=uuid7(),
                    job_id=job_id,
                    origin=bmc.TaskOrigin.SCHEDULE,
                    schedule_id=schedule_id,
                    scheduled_at=at,
                    config=JobConfig(command=CommandKind.BASH, script="true"),
                )
            ],
            by=None,
        )
    return [task.id for task in created]


async def test_create_get_and_list(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    made = [
        await services.schedules.create(
            ScheduleCreate(
                job_id=job.id, kind=ScheduleKind.CRON, cron_expression=f"{i} * * * *", timezone="Asia/Kolkata"
            )
        )
        for i in range(7)
    ]
    assert made[0].timezone == "Asia/Kolkata"
    assert made[0].generated_until is None
    assert await services.schedules.get(made[0].id) == made[0]
    seen: list[UUID] = []
    cursor = None
    while True:
        page = await services.schedules.list(job_id=job.id, cursor=cursor, limit=3)
        seen.extend(s.id for s in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [s.id for s in made]
    assert (await services.schedules.list(job_id=uuid7())).items == []


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"kind": ScheduleKind.CRON, "cron_expression": "61 * * * *"}, "$.cron_expression"),
        ({"kind": ScheduleKind.CRON}, "$.cron_expression"),
        ({"kind": ScheduleKind.CRON, "cron_expression": "* * * * *", "timezone": "Mars/Base"}, "$.timezone"),
        ({"kind": ScheduleKind.INTERVAL}, "$.interval_secs"),
        ({"kind": ScheduleKind.INTERVAL, "interval_secs": 0}, "$.interval_secs"),
        ({"kind": ScheduleKind.ONCE}, "$.start_time"),
        ({"kind": ScheduleKind.EVENT}, "$.event_name"),
        ({"kind": ScheduleKind.CRON, "cron_expression": "* * * * *", "event_name": "x"}, "$.event_name"),
        ({"kind": ScheduleKind.EVENT, "event_name": "x", "status": ScheduleStatus.EXPIRED}, "$.status"),
        ({"kind": ScheduleKind.EVENT, "event_name": "x", "misfire_max_runs": 0}, "$.misfire_max_runs"),
    ],
)
async def test_invalid_schedule_names_the_field(
    fields: dict[str, object], path: str, services: Services, make_job: MakeJob
) -> None:
    job = await make_job()
    with pytest.raises(InvalidInput) as info:
        await services.schedules.create(ScheduleCreate(job_id=job.id, **fields))  # type: ignore[arg-type]
    assert _path(info.value) == path


async def test_schedule_for_missing_or_deleted_job_is_invalid(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    await services.jobs.delete(job.id)
    for job_id in (uuid7(), job.id):
        with pytest.raises(InvalidInput) as info:
            await services.schedules.create(
                ScheduleCreate(job_id=job_id, kind=ScheduleKind.EVENT, event_name="e")
            )
        assert _path(info.value) == "$.job_id"


async def test_unknown_schedule_is_not_found(services: Services) -> None:
    for call in (
        services.schedules.get(uuid7()),
        services.schedules.update(uuid7(), ScheduleUpdate(timezone="UTC")),
        services.schedules.enable(uuid7()),
        services.schedules.delete(uuid7()),
        services.schedules.list_slots(uuid7()),
    ):
        with pytest.raises(NotFound):
            await call


async def test_rule_change_replans_the_future(
    services: Services, model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=60)
    )
    now = datetime.now(UTC)
    past = await _slot_task(model_manager, job.id, schedule.id, now - timedelta(minutes=1))
    future = await _slot_task(model_manager, job.id, schedule.id, now + timedelta(minutes=1))
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute(
            b"UPDATE sched_schedule SET generated_until = now() + interval '10 minutes' WHERE id = %s",
            (schedule.id,),
        )
    # A change that is not a rule keeps the plan ...
    kept = await services.schedules.update(schedule.id, ScheduleUpdate(parameters={"a": 1}))
    assert kept.parameters == {"a": 1}
    assert kept.generated_until is not None
    assert kept.generated_until > now + timedelta(minutes=5)
    await services.tasks.get(future[0])
    # ... a rule change drops the future tasks and rewinds the cursor to now.
    changed = await services.schedules.update(schedule.id, ScheduleUpdate(interval_secs=30))
    assert changed.interval_secs == 30
    assert changed.generated_until is not None
    assert changed.generated_until <= datetime.now(UTC)
    with pytest.raises(NotFound):
        await services.tasks.get(future[0])
    assert (await services.tasks.get(past[0])).status is TaskStatus.PENDING


async def test_invalid_update_changes_nothing(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.CRON, cron_expression="0 * * * *")
    )
    for patch, path in [
        (ScheduleUpdate(cron_expression="nope"), "$.cron_expression"),
        (ScheduleUpdate(cron_expression=None), "$.cron_expression"),
        (ScheduleUpdate(interval_secs=5), "$.interval_secs"),
        (ScheduleUpdate(status=ScheduleStatus.EXPIRED), "$.status"),
    ]:
        with pytest.raises(InvalidInput) as info:
            await services.schedules.update(schedule.id, patch)
        assert _path(info.value) == path
    assert await services.schedules.get(schedule.id) == schedule


async def test_enable_disable(
    services: Services, model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=5)
    )
    future = await _slot_task(model_manager, job.id, schedule.id, datetime.now(UTC) + timedelta(minutes=1))
    assert (await services.schedules.enable(schedule.id)).status is ScheduleStatus.ENABLED  # no-op
    assert (await services.schedules.disable(schedule.id)).status is ScheduleStatus.DISABLED
    with pytest.raises(NotFound):
        await services.tasks.get(future[0])
    assert (await services.schedules.disable(schedule.id)).status is ScheduleStatus.DISABLED
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute(b"UPDATE sched_schedule SET status = 'expired' WHERE id = %s", (schedule.id,))
    assert (await services.schedules.enable(schedule.id)).status is ScheduleStatus.ENABLED


async def test_delete_removes_unstarted_tasks_and_unlinks_past_ones(
    services: Services, model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=5)
    )
    now = datetime.now(UTC)
    (due,) = await _slot_task(model_manager, job.id, schedule.id, now - timedelta(seconds=5))
    (ran,) = await _slot_task(model_manager, job.id, schedule.id, now - timedelta(seconds=10))
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute(
            b"UPDATE sched_task SET status = 'succeeded', attempt = 1, completed_at = now() WHERE id = %s",
            (ran,),
        )
    async with model_manager.transaction() as conn:
        await bmc.SlotBmc.record_many(
            conn,
            [
                bmc.NewSlot(
                    schedule_id=schedule.id,
                    scheduled_at=now - timedelta(seconds=10),
                    outcome=SlotOutcome.RAN,
                    task_id=ran,
                )
            ],
        )
    await services.schedules.delete(schedule.id)
    with pytest.raises(NotFound):
        await services.tasks.get(due)
    kept = await services.tasks.get(ran)
    assert (kept.status, kept.schedule_id) == (TaskStatus.SUCCEEDED, None)
    with pytest.raises(NotFound):
        await services.schedules.get(schedule.id)


async def test_slot_record_pages_latest_first(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=1)
    )
    base = datetime(2030, 1, 1, tzinfo=UTC)
    (task_id,) = await _slot_task(model_manager, job.id, schedule.id, base)
    slots = [
        bmc.NewSlot(
            schedule_id=schedule.id,
            scheduled_at=base + timedelta(seconds=i),
            outcome=SlotOutcome.MISSED,
            detail="down",
        )
        for i in range(1, 12)
    ]
    async with model_manager.transaction() as conn:
        written = await bmc.SlotBmc.record_many(
            conn,
            [
                bmc.NewSlot(
                    schedule_id=schedule.id, scheduled_at=base, outcome=SlotOutcome.RAN, task_id=task_id
                ),
                *slots,
            ],
        )
        assert len(written) == 12
        # Recording again keeps the first record unless told to overwrite.
        assert await bmc.SlotBmc.record_many(conn, slots[:1]) == []
        replaced = await bmc.SlotBmc.record_many(
            conn,
            [
                bmc.NewSlot(
                    schedule_id=schedule.id,
                    scheduled_at=slots[0].scheduled_at,
                    outcome=SlotOutcome.SKIPPED_OVERLAP,
                )
            ],
            overwrite=True,
        )
        assert [s.outcome for s in replaced] == [SlotOutcome.SKIPPED_OVERLAP]
    with pytest.raises(InvalidInput):  # a `ran` slot must name its task
        async with model_manager.transaction() as conn:
            await bmc.SlotBmc.record_many(
                conn,
                [
                    bmc.NewSlot(
                        schedule_id=schedule.id,
                        scheduled_at=base - timedelta(days=1),
                        outcome=SlotOutcome.RAN,
                    )
                ],
            )
    times: list[datetime] = []
    cursor = None
    while True:
        page = await services.schedules.list_slots(schedule.id, cursor=cursor, limit=5)
        times.extend(slot.scheduled_at for slot in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert times == sorted((base + timedelta(seconds=i) for i in range(12)), reverse=True)
    first = (await services.schedules.list_slots(schedule.id, limit=100)).items[-1]
    assert (first.outcome, first.task_id) == (SlotOutcome.RAN, task_id)


async def test_slot_tasks_are_idempotent(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=1)
    )
    at = datetime(2031, 1, 1, tzinfo=UTC)
    assert len(await _slot_task(model_manager, job.id, schedule.id, at)) == 1
    assert await _slot_task(model_manager, job.id, schedule.id, at) == []  # another server got there first


async def test_generator_cursor_moves_only_under_the_lease(
    services: Services, model_manager: ModelManager, make_job: MakeJob
) -> None:
    job = await make_job()
    schedule = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=1)
    )
    event = await services.schedules.create(
        ScheduleCreate(job_id=job.id, kind=ScheduleKind.EVENT, event_name="e")
    )
    leader, rival = uuid7(), uuid7()
    horizon = datetime.now(UTC) + timedelta(minutes=10)
    async with model_manager.transaction() as conn:
        due = [g.schedule.id for g in await bmc.ScheduleBmc.generatable(conn, until=horizon, limit=1000)]
        assert schedule.id in due
        assert event.id not in due
        lease = await bmc.LeaseBmc.acquire(conn, "generator", holder=leader, ttl_secs=30)
        assert lease is not None
        assert await bmc.LeaseBmc.acquire(conn, "generator", holder=rival, ttl_secs=30) is None
        moved = await bmc.ScheduleBmc.advance(
            conn,
            schedule.id,
            generated_until=horizon,
            fired=3,
            expire=False,
            lease_name="generator",
            holder=leader,
            token=lease.token,
        )
        assert moved is not None
        assert (moved.generated_until, moved.fire_count) == (horizon, 3)
        # A stale token (an earlier tenure) or another holder moves nothing.
        for holder, token in ((leader, lease.token - 1), (rival, lease.token)):
            assert (
                await bmc.ScheduleBmc.advance(
                    conn,
                    schedule.id,
                    generated_until=horizon + timedelta(hours=1),
                    fired=1,
                    expire=True,
                    lease_name="generator",
                    holder=holder,
                    token=token,
                )
                is None
            )
        # The cursor never moves backwards; expiring is possible.
        expired = await bmc.ScheduleBmc.advance(
            conn,
            schedule.id,
            generated_until=horizon - timedelta(hours=1),
            fired=0,
            expire=True,
            lease_name="generator",
            holder=leader,
            token=lease.token,
        )
        assert expired is not None
        assert (expired.generated_until, expired.status) == (horizon, ScheduleStatus.EXPIRED)
        assert schedule.id not in [
            g.schedule.id for g in await bmc.ScheduleBmc.generatable(conn, until=horizon, limit=1000)
        ]
