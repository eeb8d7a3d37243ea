"""AgentService, ServerService (with leases and the scheduler's uptime) and TokenRecordService against a real
database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from hetuflow_core.agent import AgentCapabilities, AgentMetrics, AgentUpdate
from hetuflow_core.api import TokenInfo
from hetuflow_core.enums import AgentCommandKind, AgentStatus, CommandKind, TokenScope
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import AgentRegisterData
from hetuflow_server.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from hetuflow_server.infra import ModelManager, bmc, notify
from hetuflow_server.service import Services

CAPS = AgentCapabilities(commands=[CommandKind.BASH, CommandKind.PYTHON], capacity=4, os="linux")


async def _register(services: Services, agent_id: str, server_id: object, **labels: str) -> None:
    server = await services.servers.register(server_id, name="s", address=None)  # type: ignore[arg-type]
    await services.agents.register(
        AgentRegisterData(agent_id=agent_id, name=agent_id, labels=labels, capabilities=CAPS),
        server_id=server.id,
        address="10.0.0.1",
    )


async def test_register_heartbeat_and_read(services: Services) -> None:
    server_id = uuid7()
    await _register(services, "a-reg", server_id, zone="eu")
    agent = await services.agents.get("a-reg")
    assert (agent.status, agent.labels, agent.capabilities, agent.server_id, agent.address) == (
        AgentStatus.ONLINE,
        {"zone": "eu"},
        CAPS,
        server_id,
        "10.0.0.1",
    )
    beat = await services.agents.heartbeat(
        "a-reg", server_id=server_id, metrics=AgentMetrics(running=2, load1=0.5)
    )
    assert beat.metrics == AgentMetrics(running=2, load1=0.5)
    assert beat.last_heartbeat_at is not None
    assert "a-reg" in {a.id for a in await services.agents.list()}
    with pytest.raises(NotFound):
        await services.agents.get("nobody")
    with pytest.raises(NotFound):
        await services.agents.heartbeat("nobody", server_id=server_id, metrics=None)


async def test_labels_update_is_sent_to_the_agent(services: Services, migrated_database_url: str) -> None:
    await _register(services, "a-lbl", uuid7())
    async with await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as listen:
        await listen.execute(f"LISTEN {notify.AGENT_CMD_CHANNEL}".encode())
        agent = await services.agents.update_labels("a-lbl", AgentUpdate(labels={"gpu": "yes"}))
        notes = [n async for n in listen.notifies(timeout=5, stop_after=1)]
    assert agent.labels == {"gpu": "yes"}
    notice = notify.decode_agent_command(notes[0].payload)
    assert notice is not None
    assert (notice.command, notice.labels) == (AgentCommandKind.UPDATE_LABELS, {"gpu": "yes"})
    with pytest.raises(InvalidInput):
        await services.agents.update_labels("a-lbl", AgentUpdate(labels={"bad key!": "x"}))
    with pytest.raises(NotFound):
        await services.agents.update_labels("nobody", AgentUpdate(labels={}))


async def test_drain_disable_enable(services: Services) -> None:
    server_id = uuid7()
    await _register(services, "a-mode", server_id)
    assert (await services.agents.drain("a-mode")).status is AgentStatus.DRAINING
    assert (await services.agents.drain("a-mode")).status is AgentStatus.DRAINING  # no-op
    # A reconnect keeps the operator's mode.
    await _register(services, "a-mode", server_id)
    assert (await services.agents.get("a-mode")).status is AgentStatus.DRAINING
    assert (await services.agents.disable("a-mode")).status is AgentStatus.DISABLED
    with pytest.raises(IllegalTransition):
        await services.agents.drain("a-mode")
    assert (await services.agents.enable("a-mode")).status is AgentStatus.ONLINE  # still connected
    assert (await services.agents.enable("a-mode")).status is AgentStatus.ONLINE  # no-op
    await services.agents.disconnect("a-mode", server_id=server_id)
    offline = await services.agents.get("a-mode")
    assert (offline.status, offline.server_id) == (AgentStatus.OFFLINE, None)
    with pytest.raises(IllegalTransition):
        await services.agents.drain("a-mode")
    for call in (services.agents.drain("x"), services.agents.disable("x"), services.agents.enable("x")):
        with pytest.raises(NotFound):
            await call


async def test_disconnect_by_a_server_that_lost_the_agent_changes_nothing(services: Services) -> None:
    old, new = uuid7(), uuid7()
    await _register(services, "a-move", old)
    await _register(services, "a-move", new)  # reconnected elsewhere
    assert await services.agents.disconnect("a-move", server_id=old) is None
    assert (await services.agents.get("a-move")).server_id == new


async def test_delete_only_when_not_connected(services: Services) -> None:
    server_id = uuid7()
    await _register(services, "a-del", server_id)
    with pytest.raises(Conflict):
        await services.agents.delete("a-del")
    await services.agents.disconnect("a-del", server_id=server_id)
    await services.agents.delete("a-del")
    with pytest.raises(NotFound):
        await services.agents.delete("a-del")


async def test_frame_ids_are_applied_once(services: Services) -> None:
    await _register(services, "a-msg", uuid7())
    assert await services.agents.first_seen("a-msg", ["m1", "m2"]) == {"m1", "m2"}
    assert await services.agents.first_seen("a-msg", ["m2", "m3"]) == {"m3"}
    assert await services.agents.first_seen("a-msg", []) == set()


async def test_stale_agents_go_offline(services: Services, migrated_database_url: str) -> None:
    await _register(services, "a-stale", uuid7())
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute(
            b"UPDATE sched_agent SET last_heartbeat_at = now() - interval '1 hour' WHERE id = 'a-stale'"
        )
    assert "a-stale" in await services.dispatch.reap_offline_agents(timeout_secs=15)
    assert (await services.agents.get("a-stale")).status is AgentStatus.OFFLINE


async def test_servers_and_leader_lease(services: Services, model_manager: ModelManager) -> None:
    first, second = uuid7(), uuid7()
    await services.servers.register(first, name="one", address="http://one")
    await services.servers.register(second, name="two", address=None)
    lease = await services.servers.acquire_lease(bmc.LEADER_LEASE, holder=first, ttl_secs=30)
    assert lease is not None
    assert await services.servers.acquire_lease(bmc.LEADER_LEASE, holder=second, ttl_secs=30) is None
    renewed = await services.servers.acquire_lease(bmc.LEADER_LEASE, holder=first, ttl_secs=30)
    assert renewed is not None
    assert renewed.token == lease.token  # renewal keeps the tenure
    leaders = {s.id: s.is_leader for s in await services.servers.list()}
    assert (leaders[first], leaders[second]) == (True, False)
    assert await services.servers.release_lease(bmc.LEADER_LEASE, holder=first)
    taken = await services.servers.acquire_lease(bmc.LEADER_LEASE, holder=second, ttl_secs=30)
    assert taken is not None
    assert taken.token == lease.token + 1  # a new tenure fences the old one
    async with model_manager.transaction() as conn:
        assert await bmc.LeaseBmc.hold(conn, bmc.LEADER_LEASE, holder=second, token=taken.token)
        assert not await bmc.LeaseBmc.hold(conn, bmc.LEADER_LEASE, holder=first, token=lease.token)
    await services.servers.heartbeat(first)
    await services.servers.deactivate(first)
    assert {s.id: s.status.value for s in await services.servers.list()}[first] == "inactive"


async def test_the_schedulers_uptime_restarts_after_a_silence_longer_than_its_gap(
    services: Services, model_manager: ModelManager
) -> None:
    async def up_since() -> datetime:
        async with model_manager.transaction() as conn:
            return await bmc.UptimeBmc.up_since(conn)

    before = datetime.now(UTC)
    assert await up_since() >= before  # no server ever said it was up: nothing was watched
    since = await services.servers.mark_up(gap_secs=60)
    assert await services.servers.mark_up(gap_secs=60) == since  # heartbeats within the gap: one uptime
    assert await up_since() == since
    async with model_manager.transaction() as conn:  # every server silent for two minutes
        await conn.execute("UPDATE sched_uptime SET seen_at = seen_at - interval '2 minutes'")
    # Before the next heartbeat, the stale row already says the scheduler was down until now ...
    assert await up_since() > since
    # ... and the heartbeat after the silence starts a new uptime.
    again = await services.servers.mark_up(gap_secs=60)
    assert again > since
    assert await up_since() == again
    async with model_manager.transaction() as conn:
        await conn.execute("DELETE FROM sched_uptime")


async def test_expired_lease_can_be_taken(services: Services, model_manager: ModelManager) -> None:
    a, b = uuid7(), uuid7()
    first = await services.servers.acquire_lease("short", holder=a, ttl_secs=0.001)
    assert first is not None
    async with model_manager.transaction() as conn:
        stored = await bmc.LeaseBmc.get(conn, "short")
    assert stored is not None
    assert stored.expires_at <= datetime.now(UTC) + timedelta(seconds=1)
    # ttl 1 ms: by the next transaction the lease has expired.
    taken = await services.servers.acquire_lease("short", holder=b, ttl_secs=30)
    assert taken is not None
    assert (taken.holder, taken.token) == (b, first.token + 1)


def _token(**overrides: object) -> TokenInfo:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "jti": uuid7(),
        "name": "ci",
        "scope": TokenScope.ADMIN,
        "subject": "ci",
        "created_at": now,
        "expires_at": now + timedelta(days=1),
        "revoked_at": None,
    }
    fields.update(overrides)
    return TokenInfo(**fields)  # type: ignore[arg-type]


async def test_tokens(services: Services) -> None:
    info = _token()
    stored = await services.tokens.insert(info, created_by="cli")
    assert stored.jti == info.jti
    assert stored.revoked_at is None
    with pytest.raises(Conflict):
        await services.tokens.insert(info)
    assert await services.tokens.get(info.jti) == stored
    assert not await services.tokens.is_revoked(info.jti)
    assert await services.tokens.is_revoked(uuid7())  # never issued here: not trusted
    revoked = await services.tokens.revoke(info.jti)
    assert revoked.revoked_at is not None
    assert (await services.tokens.revoke(info.jti)).revoked_at == revoked.revoked_at  # idempotent
    assert await services.tokens.is_revoked(info.jti)
    other = await services.tokens.insert(_token(scope=TokenScope.AGENT, subject="worker-1"))
    assert [t.jti for t in await services.tokens.list(include_revoked=False)] == [other.jti]
    assert {t.jti for t in await services.tokens.list()} >= {info.jti, other.jti}
    with pytest.raises(NotFound):
        await services.tokens.revoke(uuid7())
    with pytest.raises(NotFound):
        await services.tokens.get(uuid7())
    now = datetime.now(UTC)
    with pytest.raises(InvalidInput):
        await services.tokens.insert(_token(created_at=now, expires_at=now - timedelta(seconds=1)))
