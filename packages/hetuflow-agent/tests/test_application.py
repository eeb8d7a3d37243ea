"""The whole agent as a real process: ``python -m hetuflow_agent run`` against a real WebSocket server.

Shutdown is the subject here: SIGTERM drains (heartbeat ``draining``, zero credits, running tasks
finish), reports are flushed, the connection is closed cleanly and the process exits 0; a drain that
runs out of time hands the task back as ``lost``; a second signal or the server's ``shutdown`` command
end it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from protocol_server import (
    AGENT_ID,
    TOKEN,
    ProtocolServer,
    ServerConnection,
    dispatch,
    final_update,
    running_server,
    start_running,
)

from hetuflow_core.enums import AgentCommandKind, AgentStatus, InstanceStatus
from hetuflow_core.protocol import (
    AcquireTaskRequest,
    AgentCommand,
    AgentCommandData,
    HeartbeatRequest,
    TaskInstanceUpdated,
    TaskLogChunk,
)

AGENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HETUFLOW_AGENT__")} | {
    "HETUFLOW_AGENT__BACKOFF_INITIAL_SECS": "0.05",
    "HETUFLOW_AGENT__BACKOFF_MAX_SECS": "0.2",
    "HETUFLOW_AGENT__KILL_GRACE_SECS": "0.5",
}
EXIT_SECS = 20.0


@pytest.fixture
async def server() -> AsyncIterator[ProtocolServer]:
    async with running_server() as srv:
        yield srv


async def _start_agent(
    server: ProtocolServer, workdir: Path, **env: str
) -> tuple[asyncio.subprocess.Process, ServerConnection]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hetuflow_agent",
        "run",
        "--server",
        server.url,
        "--token",
        TOKEN,
        "--id",
        AGENT_ID,
        "--workdir",
        str(workdir),
        "--capacity",
        "2",
        "--log-format",
        "json",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=AGENT_ENV | env,
    )
    try:
        conn = await server.registered(0, within=EXIT_SECS)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, conn


async def _exit(proc: asyncio.subprocess.Process) -> tuple[int, list[dict[str, object]]]:
    """Wait for the agent to exit; its status and its JSON log lines."""
    assert proc.stderr is not None
    try:
        err = await asyncio.wait_for(proc.stderr.read(), EXIT_SECS)
        code = await asyncio.wait_for(proc.wait(), EXIT_SECS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return code, [json.loads(line) for line in err.decode().splitlines()]


async def test_sigterm_drains_flushes_closes_and_exits_0(server: ProtocolServer, tmp_path: Path) -> None:
    proc, conn = await _start_agent(server, tmp_path)
    task = dispatch("sleep 0.5; echo finished")
    await conn.send_frame(task)
    await conn.expect(TaskInstanceUpdated, lambda f: f.data.status is InstanceStatus.RUNNING)

    proc.send_signal(signal.SIGTERM)
    await conn.expect(HeartbeatRequest, lambda f: f.data.status is AgentStatus.DRAINING)
    await conn.expect(AcquireTaskRequest, lambda f: f.data.free_slots == 0)
    final = await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
    assert final.data.status is InstanceStatus.SUCCEEDED  # the running task was allowed to finish
    assert b"finished\n" in b"".join(f.data.content for f in conn.of(TaskLogChunk))

    code, logs = await _exit(proc)
    assert code == 0
    await asyncio.wait_for(conn.closed.wait(), EXIT_SECS)
    assert conn.close_code == 1001  # closed cleanly: going away
    assert {"ts", "level", "logger", "message"} <= set(logs[0])
    assert any(str(entry["message"]).startswith(f"agent {AGENT_ID} stopped") for entry in logs)
    assert not [entry for entry in logs if entry["level"] == "error"]


async def test_drain_timeout_hands_the_task_back_as_lost(server: ProtocolServer, tmp_path: Path) -> None:
    proc, conn = await _start_agent(server, tmp_path, HETUFLOW_AGENT__DRAIN_TIMEOUT_SECS="0.3")
    task = await start_running(conn)
    proc.send_signal(signal.SIGTERM)
    final = await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
    assert final.data.status is InstanceStatus.LOST  # the server retries it elsewhere
    code, _ = await _exit(proc)
    assert code == 0


async def test_a_second_signal_cuts_the_drain_short(server: ProtocolServer, tmp_path: Path) -> None:
    proc, conn = await _start_agent(server, tmp_path, HETUFLOW_AGENT__DRAIN_TIMEOUT_SECS="60")
    task = await start_running(conn)
    proc.send_signal(signal.SIGINT)
    await conn.expect(HeartbeatRequest, lambda f: f.data.status is AgentStatus.DRAINING)
    proc.send_signal(signal.SIGINT)
    final = await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
    assert final.data.status is InstanceStatus.LOST
    code, logs = await _exit(proc)
    assert code == 0
    assert any("second stop request" in str(entry["message"]) for entry in logs)


async def test_shutdown_command_stops_the_agent(server: ProtocolServer, tmp_path: Path) -> None:
    proc, conn = await _start_agent(server, tmp_path)
    await conn.send_frame(AgentCommand(data=AgentCommandData(command=AgentCommandKind.SHUTDOWN)))
    code, _ = await _exit(proc)
    assert code == 0
    assert conn.close_code == 1001
