"""LISTEN/NOTIFY against a real PostgreSQL: delivery at commit only, callbacks isolated from each other, and a
listener that survives the termination of its connection."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import psycopg
import pytest

from hetuflow_core.enums import AgentCommandKind
from hetuflow_core.ids import uuid7
from hetuflow_server.infra import ModelManager, notify

WAIT_SECS = 10.0


class Boom(Exception):
    pass


@dataclasses.dataclass
class Harness:
    listener: notify.Listener
    received: asyncio.Queue[str]
    connects: asyncio.Queue[int]


@pytest.fixture
async def harness(migrated_database_url: str) -> AsyncIterator[Harness]:
    received: asyncio.Queue[str] = asyncio.Queue()
    connects: asyncio.Queue[int] = asyncio.Queue()

    async def on_work(payload: str) -> None:
        await received.put(payload)

    async def failing(payload: str) -> None:
        raise Boom(payload)

    async def on_connect() -> None:
        await connects.put(listener.backend_pid or 0)

    listener = notify.Listener(
        migrated_database_url, on_connect=on_connect, min_backoff_secs=0.05, max_backoff_secs=0.2
    )
    listener.subscribe(notify.WORK_CHANNEL, failing)  # a failing callback must not starve the next one
    listener.subscribe(notify.WORK_CHANNEL, on_work)
    listener.start()
    await listener.wait_connected(WAIT_SECS)
    assert await asyncio.wait_for(connects.get(), WAIT_SECS) == listener.backend_pid
    try:
        yield Harness(listener, received, connects)
    finally:
        await listener.stop()
    assert not listener.connected


async def _send(db: ModelManager, payload: str) -> None:
    async with db.transaction() as conn:
        await notify.notify(conn, notify.WORK_CHANNEL, payload)


async def _send_and_roll_back(db: ModelManager, payload: str) -> None:
    async with db.transaction() as conn:
        await notify.notify(conn, notify.WORK_CHANNEL, payload)
        raise Boom("abort")


async def test_notification_arrives_at_commit_only(harness: Harness, model_manager: ModelManager) -> None:
    with pytest.raises(Boom):
        await _send_and_roll_back(model_manager, "rolled-back")
    await _send(model_manager, "committed")
    # Had the rolled-back one been sent, it would be first in the queue.
    assert await asyncio.wait_for(harness.received.get(), WAIT_SECS) == "committed"


async def test_listener_survives_termination_of_its_connection(
    harness: Harness, model_manager: ModelManager, pg_admin_url: str
) -> None:
    for round_ in range(2):
        pid = harness.listener.backend_pid
        assert pid is not None
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(b"SELECT pg_terminate_backend(%s)", (pid,))
        # The on_connect hook fires after every reconnection (consumers catch up there).
        new_pid = await asyncio.wait_for(harness.connects.get(), WAIT_SECS)
        assert new_pid not in (0, pid)
        assert harness.listener.connections == round_ + 2
        await _send(model_manager, f"after-{round_}")
        assert await asyncio.wait_for(harness.received.get(), WAIT_SECS) == f"after-{round_}"


async def test_unreachable_database_keeps_retrying_until_stopped() -> None:
    lst = notify.Listener(
        "postgresql://nobody@127.0.0.1:1/none", min_backoff_secs=0.01, max_backoff_secs=0.02
    )
    lst.subscribe(notify.WORK_CHANNEL, lambda payload: asyncio.sleep(0))
    lst.start()
    with pytest.raises(TimeoutError):
        await lst.wait_connected(0.3)
    await lst.stop()
    assert lst.connections == 0


def test_subscribe_after_start_is_refused() -> None:
    async def scenario() -> None:
        lst = notify.Listener("postgresql://nobody@127.0.0.1:1/none")
        lst.start()
        try:
            with pytest.raises(RuntimeError):
                lst.subscribe(notify.WORK_CHANNEL, lambda payload: asyncio.sleep(0))
        finally:
            await lst.stop()

    asyncio.run(scenario())


def test_agent_command_payload_round_trip() -> None:
    notice = notify.AgentCommandNotice(agent_id="a-1", command=AgentCommandKind.CANCEL, instance_id=uuid7())
    assert notify.decode_agent_command(notify.encode_agent_command(notice)) == notice
    assert notify.decode_agent_command("not json") is None
    assert notify.decode_agent_command('{"agent_id": "a", "command": "explode"}') is None


async def test_oversized_payload_is_refused(model_manager: ModelManager) -> None:
    async with model_manager.transaction() as conn:
        with pytest.raises(ValueError, match="too large"):
            await notify.notify(conn, notify.WORK_CHANNEL, "x" * 8000)
