"""What an agent host can and cannot decide for itself, against a real server, real agents and PostgreSQL.

An agent's declared labels are a proposal an operator can lock; it stores log chunks only for its live
attempts and within each attempt's quota; a task never sees the agent's own settings (its token) and its
files are private to the agent's user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pipelinefixtures import AgentPool, FakeAgent, Pipeline, open_ws

from hetuflow_core.enums import AgentCommandKind, InstanceStatus, LogStream
from hetuflow_core.protocol import (
    Ack,
    AckData,
    AcquireTaskData,
    AcquireTaskRequest,
    AgentCommand,
    AgentRegisterResponse,
    Message,
    ScheduledTask,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    TaskLogChunk,
    TaskLogChunkData,
)

LOG_QUOTA_BYTES = 200_000
CHUNK_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def pipeline_env() -> dict[str, str]:
    """A small log quota, and no grace for chunks after an attempt's end."""
    return {
        "HETUFLOW_RETENTION__ATTEMPT_LOG_MAX_BYTES": str(LOG_QUOTA_BYTES),
        "HETUFLOW_RETENTION__LATE_LOG_GRACE_SECS": "0",
    }


Connect = Callable[[], Awaitable[FakeAgent]]


@pytest.fixture
async def connect(pipeline: Pipeline, agents: AgentPool) -> AsyncIterator[Connect]:
    """``await connect()``: a new connection of the test's fake agent (the same id and token each time)."""
    agent_id = f"{agents.suite}-fake"
    token = pipeline.agent_token(agent_id)
    opened: list[FakeAgent] = []

    async def open_one() -> FakeAgent:
        fake = FakeAgent(await open_ws(pipeline.server, token, agent_id), agent_id)
        opened.append(fake)
        return fake

    try:
        yield open_one
    finally:
        for fake in opened:
            fake.ws.abort()


async def test_labels_an_admin_set_outlast_what_the_agent_declares(
    pipeline: Pipeline, agents: AgentPool, connect: Connect
) -> None:
    suite = agents.suite
    first = await connect()
    assert (await first.register(labels={"suite": suite, "pool": "secure"})).data.accepted
    agent_id = first.agent_id
    assert pipeline.call("GET", f"/agents/{agent_id}")["labels_locked"] is False

    relabelled = pipeline.call(
        "PATCH", f"/agents/{agent_id}", json={"labels": {"suite": suite, "pool": "general"}}
    )
    assert (relabelled["labels"], relabelled["labels_locked"]) == ({"suite": suite, "pool": "general"}, True)
    first.ws.abort()

    # The agent comes back declaring the labels it had: the operator's stay, and the agent is told them.
    second = await connect()
    assert (await second.register(labels={"suite": suite, "pool": "secure"})).data.accepted
    command = await second.recv_until(AgentCommand)
    assert command.data.command is AgentCommandKind.UPDATE_LABELS
    assert command.data.labels == {"suite": suite, "pool": "general"}
    agent = pipeline.call("GET", f"/agents/{agent_id}")
    assert (agent["labels"], agent["labels_locked"]) == ({"suite": suite, "pool": "general"}, True)

    # Work is routed by the locked labels: the secure job's task is never dispatched to it.
    secure = pipeline.trigger(pipeline.create_job(suite=suite, labels={"pool": "secure"}, script="true"))
    general = pipeline.trigger(pipeline.create_job(suite=suite, labels={"pool": "general"}, script="true"))
    await second.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=4)))
    dispatch = await second.recv_until(ScheduledTask)
    assert str(dispatch.data.task_id) == general
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await second.recv_until(ScheduledTask)
    assert pipeline.task(secure)["status"] == "pending"
    second.ws.abort()

    # Unlocked, the labels are the agent's again from its next registration.
    unlocked = pipeline.call(
        "PATCH", f"/agents/{agent_id}", json={"labels": {"suite": suite}, "locked": False}
    )
    assert unlocked["labels_locked"] is False
    third = await connect()
    answer = await third.register(labels={"suite": suite, "pool": "secure"})
    assert isinstance(answer, AgentRegisterResponse)
    assert answer.data.accepted
    assert pipeline.call("GET", f"/agents/{agent_id}")["labels"] == {"suite": suite, "pool": "secure"}


async def test_an_agent_stores_logs_only_for_live_attempts_and_within_the_quota(
    pipeline: Pipeline, agents: AgentPool, connect: Connect
) -> None:
    fake = await connect()
    assert (await fake.register(labels={"suite": agents.suite})).data.accepted
    task_id = pipeline.run(suite=agents.suite, script="true")
    await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
    dispatch = await fake.recv_until(ScheduledTask)
    await fake.send(Ack(data=AckData(ack_id=dispatch.id)))
    instance_id = dispatch.data.instance_id

    def report(status: InstanceStatus, seq: int) -> TaskInstanceUpdated:
        data = TaskInstanceUpdatedData(
            instance_id=instance_id, task_id=dispatch.data.task_id, status=status, seq=seq, exit_code=0
        )
        return TaskInstanceUpdated(data=data)

    def chunks(seqs: range) -> list[Message]:
        return [
            TaskLogChunk(
                data=TaskLogChunkData(
                    instance_id=instance_id, stream=LogStream.STDOUT, seq=seq, content=b"y" * CHUNK_BYTES
                )
            )
            for seq in seqs
        ]

    async def send_all(frames: list[Message]) -> None:
        for frame in frames:
            await fake.send(frame)
        acks = [await fake.recv_until(Ack) for _ in frames]
        assert {ack.data.ack_id for ack in acks} == {frame.id for frame in frames}

    # Five chunks of 64 KiB against a quota of 200,000 bytes: three fit, the fourth becomes the marker.
    await send_all(
        [report(InstanceStatus.RUNNING, 0), *chunks(range(5)), report(InstanceStatus.SUCCEEDED, 1)]
    )
    assert pipeline.wait_task(task_id)["status"] == "succeeded"
    # After the end (no grace here) nothing more is stored, however much the agent sends.
    await send_all(chunks(range(5, 25)))

    entries = pipeline.call("GET", f"/instances/{instance_id}/logs", params={"limit": 10_000})["items"]
    assert [len(entry["content"]) for entry in entries[:3]] == [CHUNK_BYTES] * 3
    assert len(entries) == 4
    assert f"reached {LOG_QUOTA_BYTES} bytes" in entries[3]["content"]


def test_a_task_sees_neither_the_agents_settings_nor_excluded_variables(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    env = {
        "HETUFLOW_AGENT__TASK_ENV_EXCLUDE": "CLOUD_SECRET_*",
        "CLOUD_SECRET_KEY": "cloud-secret-value",
        "CLOUD_REGION": "eu-west",
    }
    agent = agents.start(env=env, token_in_env=True)  # the token from the environment, as documented
    token = agent.env["HETUFLOW_AGENT__TOKEN"]
    assert token not in " ".join(agent.args)
    task_id = pipeline.run(suite=agents.suite, script="env")
    task = pipeline.wait_task(task_id)
    assert task["status"] == "succeeded"
    output = "".join(entry["content"] for entry in pipeline.logs(task["instance_id"]))
    assert "CLOUD_REGION=eu-west" in output
    assert "HETUFLOW_TASK_ID=" in output
    assert "HETUFLOW_AGENT__" not in output
    assert token not in output
    assert "cloud-secret-value" not in output


def test_task_directories_and_scripts_are_private_to_the_agents_user(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agents.start()
    task_id = pipeline.run(suite=agents.suite, script='umask; stat -c %a "$PWD/.." "$PWD" "$PWD/script.sh"')
    task = pipeline.wait_task(task_id)
    assert task["status"] == "succeeded"
    output = "".join(entry["content"] for entry in pipeline.logs(task["instance_id"])).split()
    assert output[1:] == ["700", "700", "600"], f"with umask {output[0]}"
