"""The agent gateway of a real server process, spoken to frame by frame.

The client is the agent's own WebSocket module driven by hand (a "fake agent"), so each test can send exactly
the frames it needs: refusals before the upgrade (401/403), registration rules, garbage, acks and duplicates.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from pipelinefixtures import AgentPool, FakeAgent, Pipeline, open_ws

from hetuflow_agent.errors import HandshakeRejected
from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind, InstanceStatus, LogStream, ProtocolErrorCode
from hetuflow_core.protocol import (
    Ack,
    AckData,
    AcquireTaskData,
    AcquireTaskRequest,
    AgentRegisterData,
    AgentRegisterRequest,
    AgentRegisterResponse,
    Error,
    HeartbeatData,
    HeartbeatRequest,
    HeartbeatResponse,
    Message,
    ScheduledTask,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    TaskLogChunk,
    TaskLogChunkData,
)


@pytest.fixture
async def fake(pipeline: Pipeline, agents: AgentPool) -> AsyncIterator[FakeAgent]:
    """A connected (not yet registered) fake agent with its own id and token."""
    agent_id = f"{agents.suite}-fake"
    ws = await open_ws(pipeline.server, pipeline.agent_token(agent_id), agent_id)
    try:
        yield FakeAgent(ws, agent_id)
    finally:
        ws.abort()


# -- before the upgrade --------------------------------------------------------------------------------


async def test_no_token_or_a_bad_one_is_refused_with_401(pipeline: Pipeline) -> None:
    revoked = pipeline.call(
        "POST", "/tokens", json={"name": "gw-revoked", "scope": "agent", "agent_id": "gw-r"}, expect=201
    )
    pipeline.call("DELETE", f"/tokens/{revoked['info']['jti']}", expect=204)
    for token, agent_id in [(None, "gw-x"), ("not-a-token", "gw-x"), (revoked["token"], "gw-r")]:
        with pytest.raises(HandshakeRejected) as refused:
            await open_ws(pipeline.server, token, agent_id)
        assert refused.value.status == 401, refused.value


async def test_a_token_of_another_agent_or_scope_is_refused_with_403(pipeline: Pipeline) -> None:
    for token, agent_id in [(pipeline.agent_token("gw-a"), "gw-b"), (pipeline.server.admin_token, "gw-a")]:
        with pytest.raises(HandshakeRejected) as refused:
            await open_ws(pipeline.server, token, agent_id)
        assert refused.value.status == 403, refused.value
    assert "gw-b" in refused.value.body or "agent" in refused.value.body


async def test_a_probe_that_sends_nothing_changes_nothing(pipeline: Pipeline) -> None:
    ws = await open_ws(pipeline.server, pipeline.agent_token("gw-probe"), "gw-probe")
    await ws.close()
    await asyncio.sleep(0.2)
    assert pipeline.client.get("/api/v1/agents/gw-probe").status_code == 404


# -- registration --------------------------------------------------------------------------------------


async def test_registering_as_another_agent_is_refused_and_closed(pipeline: Pipeline) -> None:
    # No id header: the token's subject is the agent id.
    ws = await open_ws(pipeline.server, pipeline.agent_token("gw-me"), None)
    fake = FakeAgent(ws, "gw-someone-else")
    error = await fake.register()
    assert isinstance(error, Error)
    assert error.data.code is ProtocolErrorCode.UNAUTHORIZED
    assert (await fake.closed()).code == 1008


async def test_an_incompatible_protocol_is_refused_with_a_clear_answer(fake: FakeAgent) -> None:
    response = await fake.register(version="2.0")
    assert isinstance(response, AgentRegisterResponse)
    assert response.data.accepted is False
    assert "protocol 2.0" in (response.data.error or "")
    assert (await fake.closed()).code == 1002


async def test_the_first_frame_must_be_the_registration(fake: FakeAgent) -> None:
    await fake.send(HeartbeatRequest(data=HeartbeatData()))
    error = await fake.recv()
    assert isinstance(error, Error)
    assert error.data.code is ProtocolErrorCode.UNEXPECTED
    assert (await fake.closed()).code == 1008


async def test_registration_answers_time_and_timings_and_heartbeats_are_answered(
    pipeline: Pipeline, fake: FakeAgent
) -> None:
    response = await fake.register()
    assert isinstance(response, AgentRegisterResponse)
    assert response.data.accepted is True
    assert response.data.heartbeat_interval_secs == 0.5
    assert response.data.agent_timeout_secs == 3.0
    assert response.data.server_time_ms > 0
    beat = HeartbeatRequest(data=HeartbeatData())
    await fake.send(beat)
    answer = await fake.recv_until(HeartbeatResponse)
    assert answer.data.request_ts == beat.ts
    agent = pipeline.call("GET", f"/agents/{fake.agent_id}")
    assert agent["status"] == "online"


# -- garbage -------------------------------------------------------------------------------------------

GARBAGE = [
    "not json at all",
    "{}",
    '{"type": "no.such.frame", "id": "g1", "ts": 1, "data": {}}',
    '{"type": "task.acquire", "id": "g2", "ts": 1, "data": {"free_slots": -5}}',
    '{"type": "task.dispatch", "id": "g3", "ts": 1, "data": {}}',
    '{"type": "instance.updated", "id": "g4", "ts": 1, "data": {"instance_id": "nope"}}',
    "[1, 2, 3]",
    '{"type": "agent.register", "id": "g5", "ts": 1, "data": {"agent_id": "x"}}',
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]


async def test_garbage_gets_error_frames_then_a_policy_close_and_nobody_else_notices(
    pipeline: Pipeline, agents: AgentPool, fake: FakeAgent
) -> None:
    assert (await fake.register()).data.accepted
    bystander = agents.start()
    for index in range(19):
        await fake.send_raw(GARBAGE[index % len(GARBAGE)])
        error = await fake.recv_until(Error)
        assert error.data.code in set(ProtocolErrorCode)
    await fake.send(
        AgentRegisterRequest(
            data=AgentRegisterData(
                agent_id=fake.agent_id, name="again", capabilities=AgentCapabilities(commands=[], capacity=1)
            )
        )
    )  # a second registration on the same connection is the 20th bad frame
    error = await fake.recv_until(Error)
    assert error.data.code is ProtocolErrorCode.UNEXPECTED
    closed = await fake.closed()
    assert closed.code == 1008

    assert pipeline.client.get("/healthz").status_code == 200
    task_id = pipeline.run(suite=agents.suite, script="echo still fine")
    task = pipeline.wait_task(task_id)
    assert (task["status"], task["agent_id"]) == ("succeeded", bystander.agent_id)


async def test_error_frames_name_the_offending_frame(fake: FakeAgent) -> None:
    assert (await fake.register()).data.accepted
    await fake.send_raw('{"type": "task.acquire", "id": "bad-1", "ts": 1, "data": {"free_slots": "many"}}')
    error = await fake.recv_until(Error)
    assert (error.data.code, error.data.ref_id) == (ProtocolErrorCode.INVALID, "bad-1")


# -- credits, acks, duplicates -------------------------------------------------------------------------


async def test_credits_acks_and_duplicates(pipeline: Pipeline, fake: FakeAgent, agents: AgentPool) -> None:
    labels = {"suite": agents.suite, "fake": "yes"}
    assert (await fake.register(labels=labels)).data.accepted
    job_id = pipeline.create_job(suite=agents.suite, labels={"fake": "yes"}, script="true")
    task_ids = {pipeline.trigger(job_id) for _ in range(3)}

    await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
    dispatch = await fake.recv_until(ScheduledTask)
    assert str(dispatch.data.task_id) in task_ids
    # One credit, one dispatch: nothing else arrives while it is held.
    await fake.send(HeartbeatRequest(data=HeartbeatData()))
    await fake.recv_until(HeartbeatResponse)
    await asyncio.sleep(0.5)
    await fake.send(HeartbeatRequest(data=HeartbeatData(running=[dispatch.data.instance_id])))
    assert isinstance(await fake.recv(), HeartbeatResponse)
    await fake.send(Ack(data=AckData(ack_id=dispatch.id)))

    instance_id, task_id = dispatch.data.instance_id, dispatch.data.task_id
    running = TaskInstanceUpdated(
        data=TaskInstanceUpdatedData(instance_id=instance_id, task_id=task_id, status=InstanceStatus.RUNNING)
    )
    chunk = TaskLogChunkData(instance_id=instance_id, stream=LogStream.STDOUT, seq=0, content=b"hello \xff\n")
    done = TaskInstanceUpdated(
        data=TaskInstanceUpdatedData(
            instance_id=instance_id, task_id=task_id, status=InstanceStatus.SUCCEEDED, seq=2, exit_code=0
        )
    )
    frames: list[Message] = [
        running,
        running,
        TaskLogChunk(data=chunk),
        TaskLogChunk(data=chunk),
        done,
        running,
    ]
    for frame in frames:
        await fake.send(frame)
    acks = [await fake.recv_until(Ack) for _ in frames]
    # Each frame is acked once stored (log chunks and reports of one batch are acked by kind, not in order).
    assert sorted(ack.data.ack_id for ack in acks) == sorted(frame.id for frame in frames)
    assert all(ack.data.ok for ack in acks)

    task = pipeline.wait_task(str(task_id))
    assert task["status"] == "succeeded"
    assert [entry["content"] for entry in pipeline.logs(str(instance_id))] == ["hello \ufffd\n"]
    with psycopg.connect(pipeline.database_url) as conn:
        row = conn.execute(
            "SELECT status, reported_status FROM sched_task_instance WHERE id = %s", (instance_id,)
        ).fetchone()
    assert row == ("succeeded", None)  # the replayed "running" (same id) was not applied again

    unknown = TaskInstanceUpdated(
        data=TaskInstanceUpdatedData(instance_id=uuid.uuid4(), task_id=task_id, status=InstanceStatus.RUNNING)
    )
    await fake.send(unknown)
    refused = await fake.recv_until(Ack)
    assert (refused.data.ack_id, refused.data.ok) == (unknown.id, False)
    # Applied frames are remembered (a resend is not applied again); a refused one is not kept.
    assert stored_frame_ids(pipeline, fake.agent_id) >= {running.id, done.id}
    assert unknown.id not in stored_frame_ids(pipeline, fake.agent_id)


def stored_frame_ids(pipeline: Pipeline, agent_id: str) -> set[str]:
    """The ids of the agent's frames the server remembers as applied."""
    with psycopg.connect(pipeline.database_url) as conn:
        rows = conn.execute("SELECT msg_id FROM sched_agent_msg WHERE agent_id = %s", (agent_id,)).fetchall()
    return {row[0] for row in rows}


async def test_a_refused_dispatch_is_handed_back_even_with_no_retries_left(
    pipeline: Pipeline, fake: FakeAgent, agents: AgentPool
) -> None:
    assert (await fake.register(labels={"suite": agents.suite})).data.accepted
    task_id = pipeline.run(suite=agents.suite, script="true")  # max_retries 0

    await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
    first = await fake.recv_until(ScheduledTask)
    await fake.send(Ack(data=AckData(ack_id=first.id, ok=False, error="agent is draining")))
    await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
    second = await fake.recv_until(ScheduledTask)
    assert str(second.data.task_id) == task_id
    assert second.data.instance_id != first.data.instance_id
    await fake.send(Ack(data=AckData(ack_id=second.id)))

    statuses = [instance["status"] for instance in pipeline.instances(task_id)]
    assert statuses == ["lost", "dispatched"]
    assert "refused by the agent" in pipeline.instances(task_id)[0]["error"]


async def test_an_agent_cannot_touch_another_agents_attempt(
    pipeline: Pipeline, fake: FakeAgent, agents: AgentPool
) -> None:
    assert (await fake.register()).data.accepted
    agents.start()
    task_id = pipeline.run(suite=agents.suite, script="echo mine")
    task = pipeline.wait_task(task_id)
    instance_id, victim = uuid.UUID(task["instance_id"]), uuid.UUID(task_id)

    forged_log = TaskLogChunk(
        data=TaskLogChunkData(instance_id=instance_id, stream=LogStream.STDOUT, seq=99, content=b"forged\n")
    )
    forged_report = TaskInstanceUpdated(
        data=TaskInstanceUpdatedData(
            instance_id=instance_id, task_id=victim, status=InstanceStatus.FAILED, exit_code=1
        )
    )
    await fake.send(forged_log)
    await fake.send(forged_report)
    acks = {ack.data.ack_id: ack.data for ack in [await fake.recv_until(Ack) for _ in range(2)]}
    assert acks[forged_report.id].ok is False
    assert forged_report.id not in stored_frame_ids(pipeline, fake.agent_id)
    assert [entry["content"] for entry in pipeline.logs(str(instance_id))] == ["mine\n"]
    assert pipeline.task(task_id)["status"] == "succeeded"
    (instance,) = pipeline.instances(task_id)
    assert (instance["status"], instance["exit_code"]) == ("succeeded", 0)


@pytest.mark.parametrize(("capacity", "prefetch"), [(1, 1), (2, 10_000)])
async def test_an_agent_never_holds_more_than_its_capacity_and_prefetch_whatever_it_claims(
    pipeline: Pipeline, fake: FakeAgent, agents: AgentPool, capacity: int, prefetch: int
) -> None:
    # The prefetch window counts at most the capacity, however large the agent declares it.
    cap = capacity + min(prefetch, capacity)
    labels = {"suite": agents.suite, "greedy": "yes"}
    capabilities = AgentCapabilities(commands=[CommandKind.BASH], capacity=capacity, prefetch=prefetch)
    await fake.send(
        AgentRegisterRequest(
            data=AgentRegisterData(
                agent_id=fake.agent_id, name=fake.agent_id, labels=labels, capabilities=capabilities
            )
        )
    )
    assert (await fake.recv_until(AgentRegisterResponse)).data.accepted
    job_id = pipeline.create_job(suite=agents.suite, labels={"greedy": "yes"}, script="true")
    task_ids = {pipeline.trigger(job_id) for _ in range(3 * cap)}

    held: list[ScheduledTask] = []
    finished: set[str] = set()

    async def next_dispatch(wait_secs: float) -> ScheduledTask | None:
        # Beating keeps the attempts it holds alive on the server however long the test waits.
        await fake.send(HeartbeatRequest(data=HeartbeatData(running=[f.data.instance_id for f in held])))
        await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=10_000)))
        try:
            async with asyncio.timeout(wait_secs):
                frame: ScheduledTask = await fake.recv_until(ScheduledTask)
        except TimeoutError:
            return None
        await fake.send(Ack(data=AckData(ack_id=frame.id)))
        return frame

    while len(finished) < len(task_ids):
        frame = await next_dispatch(1.0)
        if frame is not None:
            held.append(frame)
            if len(held) < cap:
                continue
            # At capacity plus prefetch: nothing more comes, however many slots it claims.
            extra = await next_dispatch(0.5)
            assert extra is None, f"attempt {cap + 1} was dispatched to an agent of capacity {capacity}"
        oldest = held.pop(0).data  # end the oldest: a slot frees
        for seq, status in enumerate((InstanceStatus.RUNNING, InstanceStatus.SUCCEEDED)):
            report = TaskInstanceUpdatedData(
                instance_id=oldest.instance_id, task_id=oldest.task_id, status=status, seq=seq, exit_code=0
            )
            await fake.send(TaskInstanceUpdated(data=report))
        finished.add(str(oldest.task_id))
    assert finished == task_ids
    for task_id in task_ids:
        assert pipeline.wait_task(task_id)["status"] == "succeeded"
