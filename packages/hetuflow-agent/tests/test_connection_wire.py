"""The WebSocket client against a real wsproto server on 127.0.0.1: upgrade, errors, framing, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from protocol_server import (
    AGENT_ID,
    TOKEN,
    WAIT_SECS,
    ProtocolServer,
    free_port,
    running_server,
)
from wsproto.events import BytesMessage

from hetuflow_agent.connection.url import make_ssl_context, parse_server_url
from hetuflow_agent.connection.websocket import WebSocket, connect
from hetuflow_agent.errors import (
    ConnectFailed,
    ConnectionClosed,
    ConnectionLost,
    HandshakeRejected,
    MessageTooLarge,
)
from hetuflow_core.enums import InstanceStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import (
    AcquireTaskData,
    AcquireTaskRequest,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    encode,
)


@pytest.fixture
async def server() -> AsyncIterator[ProtocolServer]:
    async with running_server() as srv:
        yield srv


async def _open(server: ProtocolServer, **kwargs: Any) -> WebSocket:
    options: dict[str, Any] = {"agent_id": AGENT_ID, "timeout_secs": 5.0} | kwargs
    token = options.pop("token", TOKEN)
    return await connect(parse_server_url(server.url), token, **options)


async def test_upgrade_sends_token_and_agent_id(server: ProtocolServer) -> None:
    ws = await _open(server)
    conn = await server.connection(0)
    assert conn.headers["authorization"] == f"Bearer {TOKEN}"
    assert conn.headers["x-hetuflow-agent-id"] == AGENT_ID
    assert conn.headers["user-agent"].startswith("hetuflow-agent/")
    await ws.close()
    await asyncio.wait_for(conn.closed.wait(), WAIT_SECS)
    assert conn.close_code == 1000


async def test_bad_token_is_401(server: ProtocolServer) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await _open(server, token="wrong")
    assert info.value.status == 401
    assert "401" in str(info.value)
    assert "token missing, invalid" in str(info.value)
    assert "refused by the test server" in info.value.body


async def test_missing_token_is_401(server: ProtocolServer) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await _open(server, token=None)
    assert info.value.status == 401


async def test_token_of_another_agent_is_403(server: ProtocolServer) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await _open(server, agent_id="someone-else")
    assert info.value.status == 403
    assert "not valid for this agent id" in str(info.value)


async def test_a_busy_server_is_503_with_its_retry_after(server: ProtocolServer) -> None:
    server.busy_refusals, server.retry_after_secs = 1, 2.5
    with pytest.raises(HandshakeRejected) as info:
        await _open(server)
    assert (info.value.status, info.value.retry_after_secs) == (503, 2.5)
    assert "the server is busy" in str(info.value)
    ws = await _open(server)  # the next upgrade is accepted
    await ws.close()


async def test_refused_port_is_reported_as_refused() -> None:
    url = parse_server_url(f"ws://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectFailed) as info:
        await connect(url, TOKEN, timeout_secs=5.0)
    assert info.value.kind == "refused"
    assert "connection refused" in str(info.value)


async def test_unknown_host_is_reported_as_dns() -> None:
    url = parse_server_url("ws://no-such-host.invalid:9")
    with pytest.raises(ConnectFailed) as info:
        await connect(url, TOKEN, timeout_secs=5.0)
    assert info.value.kind == "dns"
    assert "no-such-host.invalid" in str(info.value)


async def test_tls_to_a_plain_server_is_reported_as_tls(server: ProtocolServer) -> None:
    url = parse_server_url(f"wss://127.0.0.1:{server.port}")
    with pytest.raises(ConnectFailed) as info:
        await connect(url, TOKEN, agent_id=AGENT_ID, timeout_secs=5.0)
    assert info.value.kind == "tls"


@contextlib.asynccontextmanager
async def raw_server(reply: bytes | None) -> AsyncIterator[str]:
    """A TCP server that answers the upgrade request with ``reply`` verbatim (None: stays silent)."""

    handlers: list[asyncio.Task[Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            if reply is not None:
                writer.write(reply)
                await writer.drain()
            await reader.read()  # until the client goes away
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    finally:
        srv.close()
        await asyncio.wait_for(asyncio.gather(*handlers), WAIT_SECS)  # the client is gone: they end
        await srv.wait_closed()


async def test_a_server_that_never_answers_times_out() -> None:
    async with raw_server(None) as url:
        with pytest.raises(ConnectFailed) as info:
            await connect(parse_server_url(url), TOKEN, timeout_secs=0.3)
    assert info.value.kind == "timeout"
    assert "no WebSocket upgrade within 0.3 s" in str(info.value)


async def test_not_a_websocket_server_is_a_protocol_error() -> None:
    async with raw_server(b"garbage that is not HTTP\r\n\r\n") as url:
        with pytest.raises(ConnectFailed) as info:
            await connect(parse_server_url(url), TOKEN, timeout_secs=5.0)
    assert info.value.kind == "protocol"


async def test_fragmented_messages_are_reassembled(server: ProtocolServer) -> None:
    ws = await _open(server)
    conn = await server.connection(0)
    text = "é" * 5000 + "end"
    await conn.send_fragments(text, pieces=7)
    assert await asyncio.wait_for(ws.recv(), WAIT_SECS) == text
    await ws.close()


def _frame_of_size(size: int) -> bytes:
    """A protocol frame whose JSON is exactly ``size`` bytes: a credit padded through its id (small
    sizes) or a status report padded through its ``output``."""
    credit = AcquireTaskRequest(data=AcquireTaskData(free_slots=1), id="x")
    report = TaskInstanceUpdated(
        data=TaskInstanceUpdatedData(instance_id=uuid7(), task_id=uuid7(), status=InstanceStatus.RUNNING),
        id="x",
    )
    small = size - len(encode(credit))
    if small < 64:
        credit.id += "i" * small
        raw = encode(credit)
    else:
        report.data.output = "o" * (size - len(encode(report)))
        raw = encode(report)
    assert len(raw) == size
    return raw


async def test_messages_of_every_length_encoding_arrive_intact_and_in_order(server: ProtocolServer) -> None:
    # The 7-bit, 16-bit and 64-bit length forms of a frame, on both sides of each boundary, sent in one
    # loop turn (so in one write) and as str as well as bytes.
    sizes = [125, 126, 127, 65_535, 65_536, 300_000]
    ws = await _open(server)
    conn = await server.connection(0)
    sent = [_frame_of_size(size) for size in sizes]
    await asyncio.gather(*(ws.send(raw if i % 2 else raw.decode()) for i, raw in enumerate(sent)))
    await conn.wait_for(lambda: len(conn.raw) == len(sent))
    assert [text.encode() if isinstance(text, str) else text for text in conn.raw] == sent
    await ws.close()


def _server_frame(payload: bytes, first: int = 0x81) -> bytes:
    """An unmasked frame as a server sends it (FIN + text unless ``first`` says otherwise)."""
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 0x10000:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


async def test_received_messages_of_every_length_encoding_arrive_intact_whatever_the_reads(
    server: ProtocolServer,
) -> None:
    # One write holding every length form, then the same frames a few bytes at a time, with a ping and
    # a fragmented message in between: the messages come out whole and in order either way.
    sizes = [0, 1, 125, 126, 127, 65_535, 65_536, 300_000]
    texts = [("é" * size)[:size] if size % 2 else "x" * size for size in sizes]
    ws = await _open(server)
    conn = await server.connection(0)
    stream = b"".join(_server_frame(text.encode()) for text in texts)
    await conn._write(stream)
    assert [await asyncio.wait_for(ws.recv(), WAIT_SECS) for _ in texts] == texts
    pieces = [
        _server_frame(b"first"),
        _server_frame(b"are-you-there", first=0x89),  # ping
        _server_frame(b"frag", first=0x01),  # text, not final
        _server_frame(b"mented", first=0x80),  # final continuation
        _server_frame(b"last"),
    ]
    data = b"".join(pieces)
    for start in range(0, len(data), 3):
        await conn._write(data[start : start + 3])
    assert [await asyncio.wait_for(ws.recv(), WAIT_SECS) for _ in range(3)] == ["first", "fragmented", "last"]
    await conn.wait_for(lambda: conn.pongs == [b"are-you-there"])
    await ws.close()


async def test_a_text_message_that_is_not_utf8_fails_the_connection(server: ProtocolServer) -> None:
    ws = await _open(server)
    conn = await server.connection(0)
    await conn._write(_server_frame(b"fine") + _server_frame(b"\xff\xfe not text"))
    assert await asyncio.wait_for(ws.recv(), WAIT_SECS) == "fine"
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(ws.recv(), WAIT_SECS)


async def test_ping_is_answered_with_pong(server: ProtocolServer) -> None:
    ws = await _open(server)
    conn = await server.connection(0)
    await conn.ping(b"are-you-there")
    await conn.send_text("after the ping")
    assert await asyncio.wait_for(ws.recv(), WAIT_SECS) == "after the ping"
    await conn.wait_for(lambda: conn.pongs == [b"are-you-there"])
    await ws.close()


async def test_oversized_message_is_refused_and_the_connection_survives(server: ProtocolServer) -> None:
    ws = await _open(server, max_message_bytes=65_536)
    conn = await server.connection(0)
    await conn.send_fragments("x" * 200_000, pieces=4)
    await conn.send_text("small")
    with pytest.raises(MessageTooLarge) as info:
        await asyncio.wait_for(ws.recv(), WAIT_SECS)
    assert info.value.size == 200_000
    assert await asyncio.wait_for(ws.recv(), WAIT_SECS) == "small"
    await ws.close()


async def test_server_close_is_connection_closed_with_code(server: ProtocolServer) -> None:
    ws = await _open(server)
    conn = await server.connection(0)
    receiving = asyncio.create_task(ws.recv())
    await conn.close(1012, "restarting")
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(receiving, WAIT_SECS)
    assert (info.value.code, info.value.reason) == (1012, "restarting")
    assert conn.close_code == 1012  # the agent answered the close handshake


async def test_dropped_connection_is_connection_lost(server: ProtocolServer) -> None:
    ws = await _open(server)
    conn = await server.connection(0)
    conn.drop()
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(ws.recv(), WAIT_SECS)
    with pytest.raises(ConnectionLost):
        await ws.send("too late")


async def test_binary_messages_arrive_as_bytes(server: ProtocolServer) -> None:
    ws = await _open(server)
    conn = await server.connection(0)
    await conn._write(conn.ws.send(BytesMessage(data=b"\x00\x01")))
    assert await asyncio.wait_for(ws.recv(), WAIT_SECS) == b"\x00\x01"
    await ws.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command) and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_wss_with_a_trusted_ca_file(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    secure = ProtocolServer()
    await secure.start(tls=tls)
    try:
        url = parse_server_url(secure.url)
        with pytest.raises(ConnectFailed) as info:  # the system CAs do not know this certificate
            await connect(url, TOKEN, agent_id=AGENT_ID, timeout_secs=5.0)
        assert info.value.kind == "tls"
        assert "certificate not trusted" in str(info.value)
        for index, context in enumerate(
            (make_ssl_context(ca_file=str(cert)), make_ssl_context(insecure=True))
        ):
            ws = await connect(url, TOKEN, agent_id=AGENT_ID, ssl_context=context, timeout_secs=5.0)
            conn = await secure.connection(index)
            await conn.send_text("over tls")
            assert await asyncio.wait_for(ws.recv(), WAIT_SECS) == "over tls"
            await ws.close()
    finally:
        await secure.stop()
