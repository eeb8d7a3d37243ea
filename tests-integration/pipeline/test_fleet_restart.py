"""A fleet of a few hundred agent connections through a kill -9 and restart of their server.

Every agent is a real protocol connection (the agent's own WebSocket client, frames written by the test), so
hundreds fit in the test process. The server bounds concurrent registrations and refuses the rest with 503
and ``Retry-After``; the connections here retry as the agent does. What the test counts: every agent is
registered again after the restart, and the attempts some of them were running are kept by the state sync,
none lost (the agent timeout of this module outlasts the restart, so the leader never sees silence).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence

import pytest
from pipelinefixtures import FakeAgent, Pipeline, open_ws, wait_for
from serverfixtures import ServerProcess

from hetuflow_agent.errors import HandshakeRejected, WebSocketError
from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind, InstanceStatus
from hetuflow_core.protocol import (
    Ack,
    AckData,
    AcquireTaskData,
    AcquireTaskRequest,
    AgentRegisterData,
    AgentRegisterRequest,
    AgentRegisterResponse,
    RegisterResponseData,
    RunningInstance,
    ScheduledTask,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
)

FLEET = 300
"""Agents: several times the registrations the server admits at once, so its admission comes into play."""
HOLDERS = 12
"""Agents that run one attempt each through the restart."""


@pytest.fixture(scope="module")
def pipeline_env() -> dict[str, str]:
    # Silence for longer than a restart must not lose attempts here: this test is about the reconnect.
    return {
        "HETUFLOW_SCHEDULER__AGENT_TIMEOUT_SECS": "120",
        "HETUFLOW_SCHEDULER__HEARTBEAT_INTERVAL_SECS": "30",
    }


class _Member:
    """One agent of the fleet: its connection and the attempt it runs, if any."""

    def __init__(self, agent_id: str, token: str, suite: str) -> None:
        self.agent_id = agent_id
        self.token = token
        self.labels = {"suite": suite}
        self.fake: FakeAgent | None = None
        self.running: ScheduledTask | None = None

    async def connect(self, server: ServerProcess) -> RegisterResponseData:
        """Connect and register as the agent does: a busy server's 503 waits its Retry-After plus jitter, a
        server not listening yet is tried again shortly."""
        while True:
            try:
                ws = await open_ws(server, self.token, self.agent_id)
            except HandshakeRejected as refused:
                if refused.status != 503:
                    raise
                await asyncio.sleep(refused.retry_after_secs + random.uniform(0.0, 0.5))
                continue
            except WebSocketError:
                await asyncio.sleep(0.2)
                continue
            self.fake = FakeAgent(ws, self.agent_id)
            running = []
            if self.running is not None:
                data = self.running.data
                running = [
                    RunningInstance(
                        instance_id=data.instance_id, task_id=data.task_id, status=InstanceStatus.RUNNING
                    )
                ]
            register = AgentRegisterData(
                agent_id=self.agent_id,
                name=self.agent_id,
                labels=self.labels,
                capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=1),
                running=running,
            )
            await self.fake.send(AgentRegisterRequest(data=register))
            response: AgentRegisterResponse = await self.fake.recv_until(AgentRegisterResponse)
            return response.data

    async def take_one(self) -> None:
        """Ask for one attempt, acknowledge it and report it running."""
        assert self.fake is not None
        await self.fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
        frame: ScheduledTask = await self.fake.recv_until(ScheduledTask)
        await self.fake.send(Ack(data=AckData(ack_id=frame.id)))
        await self.report(frame, InstanceStatus.RUNNING, seq=0)
        self.running = frame

    async def report(self, frame: ScheduledTask, status: InstanceStatus, *, seq: int) -> None:
        assert self.fake is not None
        data = TaskInstanceUpdatedData(
            instance_id=frame.data.instance_id,
            task_id=frame.data.task_id,
            status=status,
            seq=seq,
            exit_code=0,
        )
        await self.fake.send(TaskInstanceUpdated(data=data))

    async def close(self) -> None:
        if self.fake is not None:
            await self.fake.ws.close()
            self.fake = None


def _online(pipeline: Pipeline, suite: str) -> int:
    """Agents of ``suite`` the API shows online (every page)."""
    online, cursor = 0, None
    while True:
        page = pipeline.call(
            "GET", "/agents", params={"limit": 200, **({"cursor": cursor} if cursor else {})}
        )
        online += sum(1 for a in page["items"] if a["id"].startswith(suite) and a["status"] == "online")
        cursor = page.get("next_cursor")
        if not cursor:
            return online


async def _register_all(fleet: Sequence[_Member], server: ServerProcess) -> list[RegisterResponseData]:
    return list(await asyncio.gather(*(member.connect(server) for member in fleet)))


async def test_hundreds_of_agents_register_again_after_their_server_restarts_and_nothing_is_lost(
    pipeline: Pipeline,
) -> None:
    suite = f"fleet-{uuid.uuid4().hex[:8]}"
    server = pipeline.start_server("fleet")
    fleet = [
        _Member(agent_id, pipeline.agent_token(agent_id), suite)
        for agent_id in (f"{suite}-{n:03d}" for n in range(FLEET))
    ]
    first = await _register_all(fleet, server)
    assert all(answer.accepted for answer in first)

    job_id = pipeline.create_job(suite=suite, script="true")
    task_ids = {pipeline.trigger(job_id) for _ in range(HOLDERS)}
    holders = fleet[:HOLDERS]
    await asyncio.gather(*(member.take_one() for member in holders))
    wait_for(
        lambda: all(pipeline.task(task_id)["status"] == "running" for task_id in task_ids),
        what="the holders' attempts running",
    )

    pipeline.kill_server(server)
    await asyncio.gather(*(member.close() for member in fleet), return_exceptions=True)
    server = pipeline.start_server("fleet", port=server.port)
    again = await _register_all(fleet, server)

    assert all(answer.accepted for answer in again)
    assert all(answer.server_id == again[0].server_id for answer in again)
    for member, answer in zip(holders, again, strict=False):
        assert member.running is not None
        assert answer.keep == [member.running.data.instance_id]
        assert answer.kill == []
    assert _online(pipeline, suite) == FLEET

    for member in holders:
        assert member.running is not None
        await member.report(member.running, InstanceStatus.SUCCEEDED, seq=1)
    for task_id in task_ids:
        assert pipeline.wait_task(task_id)["status"] == "succeeded"
        (instance,) = pipeline.instances(task_id)  # one attempt each: none lost, none retried
        assert instance["status"] == "succeeded"
    await asyncio.gather(*(member.close() for member in fleet), return_exceptions=True)
