"""The one error boundary of the database layer: psycopg and pool failures become the server's own errors, and
the pool outlives connections that die under it. Also the retention statements."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.enums import CommandKind, LogStream, ScheduleKind
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.schedule import ScheduleCreate
from hetuflow_core.task import TaskTrigger
from hetuflow_server.errors import Conflict, DatabaseUnavailable, InvalidInput
from hetuflow_server.infra import ModelManager, bmc, db
from hetuflow_server.infra.sql import Query
from hetuflow_server.service import AgentCapacity, Services


async def test_check_violation_is_invalid_input(model_manager: ModelManager, make_job: MakeJob) -> None:
    job = await make_job()
    task = bmc.NewTask(
        id=uuid7(),
        job_id=job.id,
        origin=bmc.TaskOrigin.MANUAL,
        scheduled_at=datetime.now(UTC),
        config=JobConfig(command=CommandKind.BASH, script="true"),
        priority=5000,  # outside the CHECK's range
    )
    with pytest.raises(InvalidInput, match="priority"):
        async with model_manager.transaction() as conn:
            await bmc.TaskBmc.insert_many(conn, [task], by=None)


async def test_missing_reference_is_invalid_input_naming_the_column(model_manager: ModelManager) -> None:
    data = ScheduleCreate(job_id=uuid7(), kind=ScheduleKind.EVENT, event_name="e")
    with pytest.raises(InvalidInput) as info:
        async with model_manager.transaction() as conn:
            await bmc.ScheduleBmc.insert(conn, uuid7(), data)
    assert [f.path for f in info.value.fields] == ["$.job_id"]


async def test_deleting_a_referenced_row_is_a_conflict(
    services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job()
    await services.jobs.trigger(job.id, TaskTrigger())
    async with await psycopg.AsyncConnection.connect(migrated_database_url) as conn:
        with pytest.raises(psycopg.errors.IntegrityError) as info:
            await conn.execute(b"DELETE FROM sched_job WHERE id = %s", (job.id,))
    translated = db.translate(info.value)
    assert isinstance(translated, Conflict)
    assert "still in use" in translated.detail


# Statements a request's values can make fail, and a word of PostgreSQL's (or psycopg's) own message each.
REFUSED_VALUES = [
    ("SELECT %(v)s::int AS v", "abc", "invalid input syntax"),
    ("SELECT %(v)s::int + 1 AS v", 2**31 - 1, "out of range"),
    ("SELECT %(v)s::timestamptz + interval '300000 years' AS v", "2000-01-01T00:00:00Z", "out of range"),
    ("SELECT %(v)s::timestamptz AS v", "0001-01-01T00:00:00+14:00", "BC"),
    ("SELECT 1 / %(v)s::int AS v", 0, "division"),
    ("SELECT %(v)s::text::json AS v", "{", "json"),
]


@pytest.mark.parametrize(("statement", "value", "database_word"), REFUSED_VALUES)
async def test_refused_values_are_described_in_our_words(
    model_manager: ModelManager, statement: str, value: object, database_word: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        async with model_manager.transaction() as conn:
            await db.fetch_one(conn, Query("probe", statement), {"v": value})
    detail = info.value.detail
    assert database_word not in detail
    assert "::" not in detail
    assert "sched_" not in detail
    assert detail.startswith("a ")


async def test_unreachable_database_is_unavailable() -> None:
    manager = ModelManager("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", timeout_secs=0.5)
    with pytest.raises(DatabaseUnavailable):
        await manager.open(timeout_secs=1)


async def test_exhausted_pool_is_unavailable(migrated_database_url: str) -> None:
    manager = ModelManager(migrated_database_url, min_size=1, max_size=1, timeout_secs=0.3)
    await manager.open()
    try:
        async with manager.transaction():
            with pytest.raises(DatabaseUnavailable, match="no database connection available"):
                async with manager.transaction():
                    pass
        await manager.ping()  # the pool is fine once the connection is back
    finally:
        await manager.close()


async def test_pool_replaces_connections_killed_under_it(
    migrated_database_url: str, pg_admin_url: str
) -> None:
    manager = ModelManager(migrated_database_url, min_size=2, max_size=2)
    await manager.open()
    try:
        await manager.ping()
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(
                b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                b" WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = ''"
                b" AND datname = %s",
                (psycopg.conninfo.conninfo_to_dict(migrated_database_url)["dbname"],),
            )
        for _ in range(4):  # every pooled connection is checked before it is handed out
            await manager.ping()
    finally:
        await manager.close()


async def test_timestamps_come_back_in_utc(model_manager: ModelManager, make_job: MakeJob) -> None:
    job = await make_job()
    assert job.created_at.utcoffset() == timedelta(0)


async def test_retention_statements(
    services: Services, model_manager: ModelManager, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job(target={"labels": {"pool": "retention"}})
    await services.jobs.trigger(job.id, TaskTrigger())
    agent = AgentCapacity(
        agent_id="keeper", labels={"pool": "retention"}, commands=[CommandKind.BASH], free_slots=1
    )
    (dispatch,) = await services.dispatch.dispatch([agent])
    chunk = bmc.NewLogChunk(instance_id=dispatch.instance.id, stream=LogStream.STDOUT, seq=0, content=b"old")
    assert await services.dispatch.store_logs([chunk]) == 1
    server = await services.servers.register(uuid7(), name="old", address=None)
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute(b"UPDATE sched_task_log SET ts = now() - interval '40 days'")
        conn.execute(
            b"UPDATE sched_server SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s",
            (server.id,),
        )
    cutoff = datetime.now(UTC) - timedelta(days=30)
    async with model_manager.transaction() as conn:
        assert await bmc.LogBmc.delete_before(conn, cutoff, limit=1000) == 1
        assert server.id in await bmc.ServerBmc.mark_stale_inactive(
            conn, before=datetime.now(UTC) - timedelta(minutes=1)
        )
    assert (await services.instances.logs(dispatch.instance.id)).items == []


async def test_concurrent_transactions_share_the_pool(model_manager: ModelManager) -> None:
    async def ping() -> None:
        await model_manager.ping()

    await asyncio.gather(*(ping() for _ in range(20)))
