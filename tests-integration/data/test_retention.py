"""Retention on the leader against real PostgreSQL: aged log chunks, frame ids and silent servers go, in
batches; recent rows stay; a server that does not lead, or lost the lease, deletes nothing; the loop runs."""

from __future__ import annotations

import asyncio
import dataclasses
from uuid import UUID

import psycopg
import pytest
from dbfixtures import MakeJob
from pipelinefixtures import WAIT_SECS

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind, LogStream, ServerStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import AgentRegisterData
from hetuflow_core.task import TaskTrigger
from hetuflow_server.config import RetentionSection
from hetuflow_server.infra import ModelManager, bmc
from hetuflow_server.metrics import ServerMetrics
from hetuflow_server.retention import Retention, RetentionReport
from hetuflow_server.scheduler.leader import Leadership
from hetuflow_server.service import AgentCapacity, Services

OLD_CHUNKS = 5
NEW_CHUNKS = 2
OLD_FRAMES = 3
POLL_SECS = 0.05
BATCH = 2  # smaller than every backlog below, so each table takes several batches


@dataclasses.dataclass
class Aged:
    """Rows of every kind retention looks at, some aged and some recent."""

    instance_id: UUID
    agent_id: str
    stale_server: UUID
    live_server: UUID


@pytest.fixture
async def aged(services: Services, make_job: MakeJob, migrated_database_url: str) -> Aged:
    suffix = uuid7().hex[-8:]
    agent_id = f"keeper-{suffix}"
    live_server = (await services.servers.register(uuid7(), name=f"live-{suffix}", address=None)).id
    stale_server = (await services.servers.register(uuid7(), name=f"stale-{suffix}", address=None)).id
    await services.agents.register(
        AgentRegisterData(
            agent_id=agent_id,
            name=agent_id,
            labels={"pool": suffix},
            capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=1),
        ),
        server_id=live_server,
        address=None,
    )
    job = await make_job(target={"labels": {"pool": suffix}})
    await services.jobs.trigger(job.id, TaskTrigger())
    capacity = AgentCapacity(
        agent_id=agent_id, labels={"pool": suffix}, commands=[CommandKind.BASH], free_slots=1
    )
    (dispatch,) = await services.dispatch.dispatch([capacity])
    instance_id = dispatch.instance.id
    chunks = [
        bmc.NewLogChunk(instance_id=instance_id, stream=LogStream.STDOUT, seq=seq, content=b"line\n")
        for seq in range(OLD_CHUNKS + NEW_CHUNKS)
    ]
    assert await services.dispatch.store_logs(chunks) == len(chunks)
    await services.agents.first_seen(agent_id, [f"old-{n}" for n in range(OLD_FRAMES)] + ["new-0"])
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute(
            "UPDATE sched_task_log SET ts = now() - interval '20 days' WHERE instance_id = %s AND seq < %s",
            (instance_id, OLD_CHUNKS),
        )
        conn.execute(
            "UPDATE sched_agent_msg SET processed_at = now() - interval '2 days'"
            " WHERE agent_id = %s AND msg_id LIKE 'old-%%'",
            (agent_id,),
        )
        conn.execute(
            "UPDATE sched_server SET last_heartbeat_at = now() - interval '1 minute' WHERE id = %s",
            (stale_server,),
        )
        # Earlier tests of this module leave their own silent servers: they must not count below.
        conn.execute(
            "UPDATE sched_server SET status = 'inactive' WHERE id <> ALL(%s)", ([live_server, stale_server],)
        )
    return Aged(instance_id, agent_id, stale_server, live_server)


async def leading(model_manager: ModelManager) -> Leadership:
    """A Leadership that holds the lease (taking it over from an earlier test's holder if needed)."""
    async with model_manager.transaction() as conn:
        await conn.execute("DELETE FROM sched_lease")
    leadership = Leadership(model_manager, uuid7(), lease_secs=30)
    assert await leadership.step()
    return leadership


def retention(
    model_manager: ModelManager,
    leadership: Leadership,
    metrics: ServerMetrics | None = None,
    **settings: float,
) -> Retention:
    section = RetentionSection(**{"log_days": 14, "interval_secs": 60.0, "batch_size": BATCH, **settings})
    return Retention(model_manager, leadership, section, heartbeat_interval_secs=5.0, metrics=metrics)


async def remaining(services: Services, aged: Aged) -> tuple[int, int]:
    """(log chunks, frame ids) left for the fixture's attempt and agent."""
    logs = len((await services.instances.logs(aged.instance_id)).items)
    async with services.db.transaction() as conn:
        cursor = await conn.execute(
            "SELECT count(*) AS n FROM sched_agent_msg WHERE agent_id = %s", (aged.agent_id,)
        )
        row = await cursor.fetchone()
    assert row is not None
    return logs, int(row["n"])


async def server_status(services: Services, server_id: UUID) -> ServerStatus:
    return next(server.status for server in await services.servers.list() if server.id == server_id)


async def test_the_leader_deletes_what_aged_out_in_batches(
    services: Services, model_manager: ModelManager, aged: Aged
) -> None:
    metrics = ServerMetrics(server_id=uuid7(), server_name="retention-test")
    report = await retention(model_manager, await leading(model_manager), metrics).run_once()

    assert report == RetentionReport(servers=1, logs=OLD_CHUNKS, frame_ids=OLD_FRAMES)
    assert await remaining(services, aged) == (NEW_CHUNKS, 1)
    assert await server_status(services, aged.stale_server) is ServerStatus.INACTIVE
    assert await server_status(services, aged.live_server) is ServerStatus.ACTIVE
    registry = metrics.registry
    assert (
        registry.get_sample_value("hetuflow_retention_deleted_rows_total", {"table": "sched_task_log"}) == 5
    )
    assert (
        registry.get_sample_value("hetuflow_retention_deleted_rows_total", {"table": "sched_agent_msg"}) == 3
    )
    assert registry.get_sample_value("hetuflow_servers_marked_inactive_total") == 1
    # A second pass finds nothing left to do.
    again = await retention(model_manager, await leading(model_manager)).run_once()
    assert again == RetentionReport()


async def test_zero_log_days_keeps_logs(services: Services, model_manager: ModelManager, aged: Aged) -> None:
    report = await retention(model_manager, await leading(model_manager), log_days=0).run_once()
    assert report.logs == 0
    assert report.frame_ids == OLD_FRAMES
    assert await remaining(services, aged) == (OLD_CHUNKS + NEW_CHUNKS, 1)


async def test_only_the_leader_deletes(services: Services, model_manager: ModelManager, aged: Aged) -> None:
    holder = await leading(model_manager)
    follower = Leadership(model_manager, uuid7(), lease_secs=30)
    assert not await follower.step()
    assert await retention(model_manager, follower).run_once() == RetentionReport()

    # A leader whose lease was taken over (it has not noticed yet) is stopped by the fence.
    async with model_manager.transaction() as conn:
        await conn.execute("UPDATE sched_lease SET expires_at = now()")
    assert await follower.step()
    assert holder.is_leader  # its local belief has not run out yet
    assert await retention(model_manager, holder).run_once() == RetentionReport(lost_lease=True)
    assert await remaining(services, aged) == (OLD_CHUNKS + NEW_CHUNKS, OLD_FRAMES + 1)
    assert await server_status(services, aged.stale_server) is ServerStatus.ACTIVE


async def test_the_loop_runs_passes_on_its_interval(
    services: Services, model_manager: ModelManager, aged: Aged
) -> None:
    loop = retention(model_manager, await leading(model_manager), interval_secs=0.05).loop()
    task = asyncio.create_task(loop(), name="test-retention")
    try:
        for _ in range(int(WAIT_SECS / POLL_SECS)):
            if await remaining(services, aged) == (NEW_CHUNKS, 1):
                break
            await asyncio.sleep(POLL_SECS)
        else:
            pytest.fail(f"the loop left {await remaining(services, aged)} rows after {WAIT_SECS} s")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
