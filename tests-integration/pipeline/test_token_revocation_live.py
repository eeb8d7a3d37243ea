"""Revoking a token ends the connections it opened, on every server: agent WebSockets and log tails.

Real server processes on one database. The servers of this module keep token records for a minute
(``auth.revocation_cache_secs = 60``, so also check live connections only once a minute) and give silent
agents a minute too: a connection that closes within the few seconds a test waits was closed by the
revocation itself (its own server's, or another server's NOTIFY), not by a cache running out or a silence
watchdog. One server with a one-second check shows the safety net for a revocation nobody announced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest
from pipelinefixtures import WAIT_SECS, AgentPool, FakeAgent, Pipeline, open_ws, wait_for
from serverfixtures import ServerProcess

from hetuflow_agent.errors import ConnectionClosed, HandshakeRejected
from hetuflow_core.protocol import AcquireTaskData, AcquireTaskRequest, ScheduledTask

CLOSE_POLICY_VIOLATION = 1008


@pytest.fixture(scope="module")
def pipeline_env() -> dict[str, str]:
    return {
        "HETUFLOW_AUTH__REVOCATION_CACHE_SECS": "60",
        "HETUFLOW_SCHEDULER__AGENT_TIMEOUT_SECS": "60",
        "HETUFLOW_SCHEDULER__HEARTBEAT_INTERVAL_SECS": "5",
    }


@pytest.fixture(scope="module")
def other_server(pipeline: Pipeline) -> ServerProcess:
    """A second server on the same database and key, with the same long cache."""
    return pipeline.start_server("other")


@pytest.fixture(scope="module")
def rechecking_server(pipeline: Pipeline) -> ServerProcess:
    """A server that checks the tokens of its live connections against their records every second."""
    return pipeline.start_server("rechecking", env={"HETUFLOW_AUTH__REVOCATION_CACHE_SECS": "1"})


def _issue(pipeline: Pipeline, scope: str, name: str, agent_id: str | None = None) -> tuple[str, str]:
    body = {"name": name, "scope": scope, **({"agent_id": agent_id} if agent_id else {})}
    issued = pipeline.call("POST", "/tokens", json=body, expect=201)
    return str(issued["token"]), str(issued["info"]["jti"])


async def _connect(server: ServerProcess, token: str, agent_id: str, suite: str) -> FakeAgent:
    fake = FakeAgent(await open_ws(server, token, agent_id), agent_id)
    assert (await fake.register(labels={"suite": suite})).data.accepted
    return fake


async def _assert_closed_then_refused(fake: FakeAgent, server: ServerProcess, token: str) -> None:
    closed = await fake.closed()
    assert closed.code == CLOSE_POLICY_VIOLATION, closed
    assert "revoked" in closed.reason
    # The agent reconnects as it does after every close, and is refused for good.
    with pytest.raises(HandshakeRejected) as refused:
        await open_ws(server, token, fake.agent_id)
    assert refused.value.status == 401


async def _frames_until_closed(fake: FakeAgent) -> tuple[list[object], ConnectionClosed]:
    """Every frame the server still sends, and its close (a frame timeout if it never closes)."""
    received: list[object] = []
    while True:
        try:
            received.append(await fake.recv())
        except ConnectionClosed as closed:
            return received, closed


async def test_revocation_closes_the_agents_connection_on_its_server(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    token, jti = _issue(pipeline, "agent", "revoked-here", agent_id="revoked-here")
    fake = await _connect(pipeline.server, token, "revoked-here", agents.suite)
    pipeline.call("DELETE", f"/tokens/{jti}", expect=204)
    await _assert_closed_then_refused(fake, pipeline.server, token)


async def test_no_dispatch_reaches_an_agent_after_its_token_is_revoked(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    token, jti = _issue(pipeline, "agent", "no-more-work", agent_id="no-more-work")
    fake = await _connect(pipeline.server, token, "no-more-work", agents.suite)
    pipeline.call("DELETE", f"/tokens/{jti}", expect=204)
    job_id = pipeline.create_job(suite=agents.suite, script="echo secret", env={"SECRET": "s3cret"})
    task_id = pipeline.trigger(job_id)
    await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
    received, closed = await _frames_until_closed(fake)
    assert "revoked" in closed.reason
    assert not [frame for frame in received if isinstance(frame, ScheduledTask)]
    assert pipeline.task(task_id)["status"] == "pending"


async def test_revocation_on_another_server_closes_the_connection(
    pipeline: Pipeline, agents: AgentPool, other_server: ServerProcess
) -> None:
    token, jti = _issue(pipeline, "agent", "revoked-elsewhere", agent_id="revoked-elsewhere")
    fake = await _connect(pipeline.server, token, "revoked-elsewhere", agents.suite)
    headers = {"Authorization": f"Bearer {pipeline.server.admin_token}"}
    url = f"{other_server.url}/api/v1/tokens/{jti}"
    revoked = await asyncio.to_thread(httpx.delete, url, headers=headers, timeout=15)
    assert revoked.status_code == 204, revoked.text
    await _assert_closed_then_refused(fake, pipeline.server, token)


async def test_revocation_by_the_cli_closes_the_connection(pipeline: Pipeline, agents: AgentPool) -> None:
    token, jti = _issue(pipeline, "agent", "revoked-by-cli", agent_id="revoked-by-cli")
    fake = await _connect(pipeline.server, token, "revoked-by-cli", agents.suite)
    result = await asyncio.to_thread(pipeline.server.cli, "token", "revoke", jti)
    assert result.returncode == 0, result.stderr
    await _assert_closed_then_refused(fake, pipeline.server, token)


async def test_unannounced_revocation_is_found_by_the_periodic_check(
    pipeline: Pipeline, agents: AgentPool, rechecking_server: ServerProcess
) -> None:
    token, jti = _issue(pipeline, "agent", "revoked-quietly", agent_id="revoked-quietly")
    fake = await _connect(rechecking_server, token, "revoked-quietly", agents.suite)
    # Written behind the servers' backs: no NOTIFY, nothing evicted from any cache.
    with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
        conn.execute("UPDATE sched_token SET revoked_at = now() WHERE jti = %s::uuid", (jti,))
    await _assert_closed_then_refused(fake, rechecking_server, token)


async def test_revoked_agent_process_reconnects_and_is_refused(pipeline: Pipeline, agents: AgentPool) -> None:
    agent = agents.start()
    listed = pipeline.call("GET", "/tokens", params={"include_revoked": "false", "limit": 1000})["items"]
    (record,) = [token for token in listed if token["subject"] == agent.agent_id]
    pipeline.call("DELETE", f"/tokens/{record['jti']}", expect=204)
    wait_for(lambda: "HTTP 401" in agent.log() or None, what="the agent's reconnection refused with 401")
    assert agent.process.poll() is None  # it keeps trying, as after any refusal, until given a new token
    assert agent.registrations() == 1


# -- log tails ------------------------------------------------------------------------------------------


@pytest.fixture
async def dispatched(pipeline: Pipeline, agents: AgentPool) -> AsyncIterator[str]:
    """An attempt dispatched to a fake agent that holds it (never ends it); its instance id."""
    token, _ = _issue(pipeline, "agent", f"{agents.suite}-holder", agent_id=f"{agents.suite}-holder")
    fake = await _connect(pipeline.server, token, f"{agents.suite}-holder", agents.suite)
    pipeline.trigger(pipeline.create_job(suite=agents.suite, script="sleep 600"))
    await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
    dispatch = await fake.recv_until(ScheduledTask)
    yield str(dispatch.data.instance_id)
    await fake.ws.close()


@pytest.mark.parametrize("revoke_on", ["same", "other"])
async def test_revocation_ends_a_log_tail(
    pipeline: Pipeline, other_server: ServerProcess, dispatched: str, revoke_on: str
) -> None:
    token, jti = _issue(pipeline, "read", f"tail-reader-{revoke_on}")
    path = f"/api/v1/instances/{dispatched}/logs/stream"
    revoker = pipeline.server if revoke_on == "same" else other_server
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=pipeline.server.url, headers=headers, timeout=WAIT_SECS) as reader,
        reader.stream("GET", path) as stream,
    ):
        assert stream.status_code == 200
        admin = {"Authorization": f"Bearer {pipeline.server.admin_token}"}
        revoked = await asyncio.to_thread(
            httpx.delete, f"{revoker.url}/api/v1/tokens/{jti}", headers=admin, timeout=15
        )
        assert revoked.status_code == 204, revoked.text
        # The stream ends by itself: running out of patience here means it went on after the revocation.
        async with asyncio.timeout(WAIT_SECS):
            body = b"".join([chunk async for chunk in stream.aiter_bytes()])
        assert b"event: end" not in body  # cut off, not finished: the attempt is still running
        again = await reader.get(path)
        assert again.status_code == 401, again.text
