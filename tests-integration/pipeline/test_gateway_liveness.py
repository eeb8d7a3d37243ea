"""Liveness at the gateway, with hand-driven agent connections to real server processes.

A silent connection is dropped and its attempt lost after the agent timeout; an attempt dispatched over a
connection the agent had already left (it registered again on another server) is handed back by the state sync
of the agent's next heartbeat, and its task is due again even with no retries left.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from pipelinefixtures import AGENT_TIMEOUT_SECS, AgentPool, FakeAgent, Pipeline, open_ws, wait_for

from hetuflow_agent.errors import WebSocketError
from hetuflow_core.enums import AgentCommandKind
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
)


async def test_a_silent_connection_is_dropped_and_its_attempt_lost(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agent_id = f"{agents.suite}-silent"
    fake = FakeAgent(await open_ws(pipeline.server, pipeline.agent_token(agent_id), agent_id), agent_id)
    try:
        assert (await fake.register(labels={"suite": agents.suite})).data.accepted
        retry = {"max_retries": 1, "backoff": "fixed", "base_secs": 0.1, "jitter": 0.0}
        task_id = pipeline.run(suite=agents.suite, script="true", retry=retry)
        await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
        dispatch = await fake.recv_until(ScheduledTask)
        await fake.send(Ack(data=AckData(ack_id=dispatch.id)))
        # From now on the agent says nothing: the server gives the connection up after the agent timeout.
        with pytest.raises(WebSocketError):
            await _read_until_dropped(fake)
    finally:
        fake.ws.abort()

    def lost() -> bool:
        return bool(pipeline.call("GET", f"/instances/{dispatch.data.instance_id}")["status"] == "lost")

    await asyncio.to_thread(wait_for, lost, what="the silent agent's attempt to be declared lost")
    assert pipeline.task(task_id)["status"] in {"waiting_retry", "pending"}


async def _read_until_dropped(fake: FakeAgent) -> None:
    async with asyncio.timeout(AGENT_TIMEOUT_SECS + 10):
        while True:
            await fake.ws.recv()


async def test_a_dispatch_over_a_connection_the_agent_left_is_handed_back(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    second = pipeline.start_server("liveness-second")
    agent_id = f"{agents.suite}-moving"
    token = pipeline.agent_token(agent_id)
    labels = {"suite": agents.suite}
    stale = FakeAgent(await open_ws(pipeline.server, token, agent_id), agent_id)
    fresh = FakeAgent(await open_ws(second, token, agent_id), agent_id)
    try:
        assert (await stale.register(labels=labels)).data.accepted
        await stale.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
        await stale.send(HeartbeatRequest(data=HeartbeatData()))
        await stale.recv_until(HeartbeatResponse)  # the first server has counted the credit
        # The agent "moves" to the second server; the first still believes in its old connection.
        assert (await fresh.register(labels=labels)).data.accepted
        task_id = pipeline.run(suite=agents.suite, script="true")  # max_retries 0
        lost = await stale.recv_until(ScheduledTask)  # sent over the connection the agent left

        await fresh.send(HeartbeatRequest(data=HeartbeatData()))  # its state sync hands the attempt back
        await fresh.recv_until(HeartbeatResponse)
        await fresh.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
        again = await fresh.recv_until(ScheduledTask)
        assert str(again.data.task_id) == task_id
        assert again.data.attempt == 2
        first = pipeline.call("GET", f"/instances/{lost.data.instance_id}")
        assert first["status"] == "lost"
        assert "connection the agent had already left" in first["error"]
    finally:
        stale.ws.abort()
        fresh.ws.abort()


async def test_an_attempt_declared_lost_while_its_agent_runs_it_is_cancelled_there(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    # The server lost the attempt while the agent was alive (its heartbeats could not be stored, say): the
    # agent's next heartbeat still lists it, so the state sync tells the agent to stop it — its retry may
    # already run elsewhere.
    agent_id = f"{agents.suite}-stale-run"
    fake = FakeAgent(await open_ws(pipeline.server, pipeline.agent_token(agent_id), agent_id), agent_id)
    try:
        assert (await fake.register(labels={"suite": agents.suite})).data.accepted
        pipeline.run(suite=agents.suite, script="sleep 30")
        await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
        dispatch = await fake.recv_until(ScheduledTask)
        instance_id = dispatch.data.instance_id
        await fake.send(Ack(data=AckData(ack_id=dispatch.id)))

        await fake.send(HeartbeatRequest(data=HeartbeatData(running=[instance_id])))
        await fake.recv_until(HeartbeatResponse)  # still live: nothing to cancel

        with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE sched_task_instance SET status = 'lost', completed_at = now() WHERE id = %s",
                (instance_id,),
            )
        await fake.send(HeartbeatRequest(data=HeartbeatData(running=[instance_id])))
        command = await fake.recv_until(AgentCommand)
        assert command.data.command is AgentCommandKind.CANCEL
        assert command.data.instance_id == instance_id
    finally:
        fake.ws.abort()
