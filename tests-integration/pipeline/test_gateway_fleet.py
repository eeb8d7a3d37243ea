"""What keeps a large fleet cheap, on a real server process: batched heartbeats and bounded registrations.

Heartbeats are stored in batches, a few per second for all agents: each beat's metrics still land on its own
agent, an agent that keeps beating is never reaped, and the state sync they carry does not cancel an attempt
that simply ended between a beat and its flush. Registrations in progress are bounded: one past the bound
waits for a place, then gets HTTP 503 with ``Retry-After`` before any upgrade, and a later one is accepted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from pipelinefixtures import (
    AGENT_TIMEOUT_SECS,
    HEARTBEAT_SECS,
    AgentPool,
    FakeAgent,
    Pipeline,
    open_ws,
    wait_for,
)
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import InvalidStatus

from hetuflow_agent.connection.websocket import WebSocket
from hetuflow_core.agent import AgentMetrics
from hetuflow_core.enums import InstanceStatus
from hetuflow_core.protocol import (
    Ack,
    AckData,
    AcquireTaskData,
    AcquireTaskRequest,
    AgentCommand,
    HeartbeatData,
    HeartbeatRequest,
    HeartbeatResponse,
    ScheduledTask,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
)
from hetuflow_server.broker.admission import MAX_CONCURRENT_REGISTRATIONS, REGISTRATION_RETRY_AFTER_SECS

AGENTS = 20


async def _beat(fake: FakeAgent, **data: Any) -> None:
    """One heartbeat, answered (stored later, with the others of its flush)."""
    await fake.send(HeartbeatRequest(data=HeartbeatData(**data)))
    await fake.recv_until(HeartbeatResponse)


def _stored(pipeline: Pipeline, agent_ids: list[str], since: str) -> dict[str, int]:
    """``metrics.running`` of the agents whose heartbeat was stored after the database time ``since``."""
    with psycopg.connect(pipeline.database_url) as conn:
        rows = conn.execute(
            "SELECT id, (metrics->>'running')::int FROM sched_agent"
            " WHERE id = ANY(%s) AND last_heartbeat_at > %s::timestamptz",
            (agent_ids, since),
        ).fetchall()
    return dict(rows)


async def _holding_one(
    pipeline: Pipeline, agents: AgentPool, name: str, script: str
) -> tuple[FakeAgent, str, ScheduledTask]:
    """A registered fake agent holding the one attempt of a new task running ``script`` (dispatched, acked);
    the agent, the task id and the dispatch."""
    agent_id = f"{agents.suite}-{name}"
    fake = FakeAgent(await open_ws(pipeline.server, pipeline.agent_token(agent_id), agent_id), agent_id)
    try:
        assert (await fake.register(labels={"suite": agents.suite})).data.accepted
        task_id = pipeline.run(suite=agents.suite, script=script)
        await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
        dispatch = await fake.recv_until(ScheduledTask)
        await fake.send(Ack(data=AckData(ack_id=dispatch.id)))
    except BaseException:
        fake.ws.abort()
        raise
    return fake, task_id, dispatch


def _database_now(pipeline: Pipeline) -> str:
    with psycopg.connect(pipeline.database_url) as conn:
        row = conn.execute("SELECT now()::text").fetchone()
    assert row is not None
    return str(row[0])


async def test_the_heartbeats_of_many_agents_are_stored_each_with_its_metrics(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    ids = [f"{agents.suite}-{index}" for index in range(AGENTS)]
    fakes = [FakeAgent(await open_ws(pipeline.server, pipeline.agent_token(i), i), i) for i in ids]
    try:
        for fake in fakes:
            assert (await fake.register(labels={"suite": agents.suite})).data.accepted
        since = _database_now(pipeline)  # after every registration stored its own heartbeat time
        await asyncio.gather(
            *(_beat(fake, metrics=AgentMetrics(running=index)) for index, fake in enumerate(fakes))
        )
        expected = {agent_id: index for index, agent_id in enumerate(ids)}

        def stored() -> bool:
            return _stored(pipeline, ids, since) == expected

        await asyncio.to_thread(wait_for, stored, what="every heartbeat to be stored with its metrics")
        statuses = {agent["id"]: agent["status"] for agent in pipeline.call("GET", "/agents")["items"]}
        assert [statuses[agent_id] for agent_id in ids] == ["online"] * AGENTS
    finally:
        for fake in fakes:
            fake.ws.abort()


async def test_an_agent_that_keeps_beating_keeps_its_attempt(pipeline: Pipeline, agents: AgentPool) -> None:
    fake, task_id, dispatch = await _holding_one(pipeline, agents, "beating", "sleep 60")
    try:
        # Beat through three agent timeouts (the reaper looks four times per timeout): only stored beats
        # keep the agent alive in the reaper's eyes.
        beats = round(3 * AGENT_TIMEOUT_SECS / HEARTBEAT_SECS)
        for _ in range(beats):
            await fake.send(HeartbeatRequest(data=HeartbeatData(running=[dispatch.data.instance_id])))
            frame = await fake.recv_until(HeartbeatResponse | AgentCommand)  # type: ignore[arg-type]
            assert isinstance(frame, HeartbeatResponse), f"unexpected command {frame}"
            await asyncio.sleep(HEARTBEAT_SECS)
        assert [i["status"] for i in pipeline.instances(task_id)] == ["dispatched"]
        assert pipeline.call("GET", f"/agents/{fake.agent_id}")["status"] == "online"
    finally:
        fake.ws.abort()


async def test_an_attempt_that_ended_after_a_beat_is_not_cancelled_by_its_flush(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    fake, task_id, dispatch = await _holding_one(pipeline, agents, "quick", "true")
    instance_id = dispatch.data.instance_id
    try:
        since = _database_now(pipeline)
        # The beat says the attempt runs; the attempt ends right after, before the beat is flushed.
        await fake.send(HeartbeatRequest(data=HeartbeatData(running=[instance_id])))
        for seq, status in enumerate((InstanceStatus.RUNNING, InstanceStatus.SUCCEEDED)):
            report = TaskInstanceUpdatedData(
                instance_id=instance_id,
                task_id=dispatch.data.task_id,
                status=status,
                seq=seq,
                exit_code=0 if status is InstanceStatus.SUCCEEDED else None,
            )
            await fake.send(TaskInstanceUpdated(data=report))
        pipeline.wait_task(task_id, "succeeded")
        await asyncio.to_thread(
            wait_for, lambda: _stored(pipeline, [fake.agent_id], since), what="the beat to be flushed"
        )
        # Frames are ordered: a cancel from that flush would arrive before this beat's answer.
        marker = HeartbeatRequest(data=HeartbeatData())
        await fake.send(marker)
        while True:
            frame = await fake.recv()
            assert not isinstance(frame, AgentCommand), f"the ended attempt was cancelled: {frame}"
            if isinstance(frame, HeartbeatResponse) and frame.data.request_ts == marker.ts:
                break
    finally:
        fake.ws.abort()


async def test_registrations_beyond_the_bound_are_refused_with_503_and_retry_after(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agent_id = f"{agents.suite}-crowd"
    token = pipeline.agent_token(agent_id)
    # Upgraded connections that do not register (yet) each hold a place among the registrations in progress.
    held: list[WebSocket] = []
    try:
        for _ in range(MAX_CONCURRENT_REGISTRATIONS):
            held.append(await open_ws(pipeline.server, token, agent_id))
        url = pipeline.server.url.replace("http://", "ws://") + "/api/v1/agents/ws"
        headers = {"Authorization": f"Bearer {token}", "X-Hetuflow-Agent-Id": agent_id}
        with pytest.raises(InvalidStatus) as refused:
            async with websockets_connect(url, additional_headers=headers, open_timeout=None):
                pass
        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == str(REGISTRATION_RETRY_AFTER_SECS)
        assert b"registrations-busy" in response.body

        held.pop().abort()  # one place is given back
        later = FakeAgent(await open_ws(pipeline.server, token, agent_id), agent_id)
        held.append(later.ws)
        assert (await later.register(labels={"suite": agents.suite})).data.accepted
    finally:
        for ws in held:
            ws.abort()
