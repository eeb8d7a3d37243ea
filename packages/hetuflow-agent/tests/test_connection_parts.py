"""Pure parts of the connection: the outbox policy, backoff with full jitter, server URL parsing."""

from __future__ import annotations

import asyncio
import logging
import random
from uuid import UUID

import pytest

from hetuflow_agent.connection.backoff import Backoff
from hetuflow_agent.connection.msgid import next_message_id
from hetuflow_agent.connection.outbox import Outbox
from hetuflow_agent.connection.url import make_ssl_context, parse_server_url
from hetuflow_core.enums import InstanceStatus, LogStream
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import (
    AgentMessage,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    TaskLogChunk,
    TaskLogChunkData,
    decode,
    encode,
)

INSTANCE = uuid7()
TASK = uuid7()


def _status(status: InstanceStatus, instance: UUID = INSTANCE, seq: int = 0) -> TaskInstanceUpdated:
    return TaskInstanceUpdated(
        data=TaskInstanceUpdatedData(instance_id=instance, task_id=TASK, status=status, seq=seq)
    )


def _log(seq: int, size: int = 100) -> TaskLogChunk:
    data = TaskLogChunkData(instance_id=INSTANCE, stream=LogStream.STDOUT, seq=seq, content=b"x" * size)
    return TaskLogChunk(data=data)


async def _drain_unsent(outbox: Outbox) -> list[str]:
    ids: list[str] = []
    while True:
        try:
            entry = await asyncio.wait_for(outbox.next_unsent(), 0.05)
        except TimeoutError:
            return ids
        ids.append(entry.id)


async def test_outbox_sends_in_order_and_resends_unacked_after_rewind() -> None:
    outbox = Outbox(max_bytes=1_000_000)
    frames: list[TaskInstanceUpdated | TaskLogChunk] = [
        _status(InstanceStatus.RUNNING),
        _log(0),
        _log(1),
        _status(InstanceStatus.SUCCEEDED, seq=1),
    ]
    for frame in frames:
        outbox.put(frame)
    outbox.put(frames[0])  # the same frame again is still one frame
    assert await _drain_unsent(outbox) == [f.id for f in frames]
    assert outbox.ack(frames[1].id)
    assert not outbox.ack(frames[1].id)
    assert not outbox.ack("unknown")
    outbox.rewind()
    assert await _drain_unsent(outbox) == [frames[0].id, frames[2].id, frames[3].id]
    assert len(outbox) == 3


async def test_outbox_drops_oldest_logs_never_statuses(caplog: pytest.LogCaptureFixture) -> None:
    size = len(_log(0, 1000).data.content) * 2  # base64 on the wire: a bit more than the raw bytes
    outbox = Outbox(max_bytes=10 * size)
    statuses = [_status(InstanceStatus.RUNNING, uuid7()) for _ in range(5)]
    logs = [_log(seq, 1000) for seq in range(40)]
    with caplog.at_level(logging.WARNING, logger="hetuflow_agent.connection.outbox"):
        for status in statuses:
            outbox.put(status)
        for log in logs:
            outbox.put(log)
    held = set(await _drain_unsent(outbox))
    assert {s.id for s in statuses} <= held  # status updates are never dropped
    kept_logs = [log.id for log in logs if log.id in held]
    assert kept_logs == [log.id for log in logs[-len(kept_logs) :]]  # the newest logs survive
    assert outbox.dropped_logs == 40 - len(kept_logs) > 0
    assert outbox.pending_bytes <= outbox.max_bytes
    assert len([r for r in caplog.records if "dropped the oldest log chunks" in r.getMessage()]) == 1


async def test_outbox_keeps_statuses_even_beyond_its_bound() -> None:
    outbox = Outbox(max_bytes=10)
    for _ in range(3):
        outbox.put(_status(InstanceStatus.RUNNING, uuid7()))
    assert len(outbox) == 3


async def test_outbox_lists_unacked_final_statuses_for_state_sync() -> None:
    outbox = Outbox(max_bytes=1_000_000)
    other = uuid7()
    outbox.put(_status(InstanceStatus.RUNNING))
    outbox.put(_status(InstanceStatus.FAILED, seq=1))
    outbox.put(_status(InstanceStatus.RUNNING, other))
    synced = outbox.finished_instances()
    assert [(s.instance_id, s.task_id, s.status) for s in synced] == [(INSTANCE, TASK, InstanceStatus.FAILED)]


async def test_outbox_wait_empty() -> None:
    outbox = Outbox(max_bytes=1_000_000)
    assert await outbox.wait_empty(0.01)
    frame = _log(0)
    outbox.put(frame)
    assert not await outbox.wait_empty(0.01)
    asyncio.get_running_loop().call_later(0.02, outbox.ack, frame.id)
    assert await outbox.wait_empty(5)


async def test_outbox_bookkeeping_stays_bounded_when_everything_is_acked() -> None:
    outbox = Outbox(max_bytes=1_000_000)
    for seq in range(20_000):
        frame = _log(seq, 10)
        outbox.put(frame)
        await outbox.next_unsent()
        outbox.ack(frame.id)
    assert len(outbox) == 0
    assert len(outbox._logs) <= 1024 + 1  # acked ids are compacted away


def test_backoff_full_jitter_doubles_to_a_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        assert 0.0 <= backoff.next_delay() <= ceilings[-1]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.ceiling() == 0.5
    for _ in range(2000):  # a very long outage neither overflows nor exceeds the cap
        assert backoff.next_delay() <= 4.0
    with pytest.raises(ValueError, match="initial_secs"):
        Backoff(2.0, 1.0)


def test_backoff_adds_its_jitter_to_a_retry_after() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    delays = [backoff.next_delay(retry_after_secs=3.0) for _ in range(200)]
    assert all(3.0 <= delay <= 7.0 for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 100  # refused agents do not come back together
    assert backoff.attempts == 200


@pytest.mark.parametrize(
    ("text", "url", "host", "port", "secure", "target", "host_header"),
    [
        ("ws://h:8080", "ws://h:8080/api/v1/agents/ws", "h", 8080, False, "/api/v1/agents/ws", "h:8080"),
        ("wss://h", "wss://h/api/v1/agents/ws", "h", 443, True, "/api/v1/agents/ws", "h"),
        ("http://h/", "ws://h/api/v1/agents/ws", "h", 80, False, "/api/v1/agents/ws", "h"),
        ("https://h:8443/x/ws?a=1", "wss://h:8443/x/ws?a=1", "h", 8443, True, "/x/ws?a=1", "h:8443"),
        (
            "ws://[::1]:9000",
            "ws://[::1]:9000/api/v1/agents/ws",
            "::1",
            9000,
            False,
            "/api/v1/agents/ws",
            "[::1]:9000",
        ),
    ],
)
def test_server_urls_are_normalised(
    text: str, url: str, host: str, port: int, secure: bool, target: str, host_header: str
) -> None:
    parsed = parse_server_url(text)
    assert (parsed.url, parsed.host, parsed.port, parsed.secure, parsed.target) == (
        url,
        host,
        port,
        secure,
        target,
    )
    assert parsed.host_header == host_header


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://h", "not a ws://"),
        ("ws://", "has no host"),
        ("ws://h:99999", "invalid port"),
        ("ws://user:pw@h", "carries credentials"),
        ("h:8080", "not a ws://"),
    ],
)
def test_bad_server_urls_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_server_url(text)


def test_insecure_tls_context_skips_verification() -> None:
    assert make_ssl_context().check_hostname
    insecure = make_ssl_context(insecure=True)
    assert not insecure.check_hostname


def test_message_ids_are_unique_hex_in_the_order_made_and_fit_the_protocol() -> None:
    ids = [next_message_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for message_id in (ids[0], ids[-1]):
        assert len(message_id) == 32
        int(message_id, 16)  # hex digits only
        frame = TaskInstanceUpdated(
            data=TaskInstanceUpdatedData(
                instance_id=INSTANCE, task_id=TASK, status=InstanceStatus.RUNNING, seq=0
            ),
            id=message_id,
        )
        assert decode(encode(frame), AgentMessage).id == message_id
