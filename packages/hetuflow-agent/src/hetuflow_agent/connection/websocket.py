"""A WebSocket client on wsproto over asyncio streams: the agent's one door to a server.

``connect`` opens TCP (TLS for ``wss://``), sends the upgrade request with the agent token as
``Authorization: Bearer …`` and returns a ``WebSocket`` once the server answers ``101``. The
``WebSocket`` sends text messages, reassembles fragmented incoming messages, answers pings and the close
handshake, and refuses incoming messages above a size limit without buffering them.

Messages sent during one turn of the event loop leave in one socket write at the end of that turn: an
agent busy with short tasks sends an ack, a ``running`` and a final report and a credit announcement per
task, often several tasks' worth at once, and one ``send`` system call per message was the largest
single cost of the agent's loop (on loopback, the sender's call also runs the receiver's TCP path).
For the same reason outgoing messages are framed here (``_text_frame``: a header, a fresh random mask,
the masked payload) rather than through wsproto's event layers, and so is the common incoming frame: a
complete, unfragmented, unmasked text frame within the size limit (every frame a server sends the
agent, in practice) is cut from the received bytes directly. Every other frame — control frames,
fragments, binary, reserved bits, a frame above the limit or not valid UTF-8 — is handed to wsproto,
whole and at a frame boundary, so its parser and state stay exactly as if it had seen every byte; it
also frames the handshake, pongs and close frames.

This module is the agent's exception boundary for the network (STYLE 9): ``OSError``,
``socket.gaierror``, ``ssl.SSLError``, ``TimeoutError`` and wsproto/h11 protocol errors are translated
here, and only here, into ``hetuflow_agent.errors`` — ``ConnectFailed`` (with a ``kind``) before the
upgrade succeeds, ``HandshakeRejected`` for an HTTP answer, ``ConnectionLost``/``ConnectionClosed``
afterwards. Nothing else escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Final, NoReturn

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from hetuflow_agent.__about__ import __version__
from hetuflow_agent.connection.url import ServerUrl
from hetuflow_agent.errors import (
    ConnectFailed,
    ConnectionClosed,
    ConnectionLost,
    HandshakeRejected,
    MessageTooLarge,
    WebSocketError,
)

__all__ = ["AGENT_ID_HEADER", "CLOSE_GOING_AWAY", "CLOSE_NORMAL", "WebSocket", "connect"]

logger = logging.getLogger(__name__)

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
_CLOSE_MESSAGE_TOO_BIG: Final = 1009

_FIN_TEXT: Final = 0x81
"""First byte of a complete text message in one frame: FIN, no reserved bits, opcode 1."""
_OPCODE_CONTINUATION: Final = 0x0
_OPCODE_TEXT: Final = 0x1
_OPCODE_BINARY: Final = 0x2

_MASK_KEY_BLOCK_BYTES: Final = 4096
_READ_CHUNK_BYTES: Final = 64 * 1024
_CLOSE_TIMEOUT_SECS: Final = 2.0
"""How long ``close`` waits for the server's close frame before dropping the socket."""
_MAX_REJECT_BODY_BYTES: Final = 2048
_MAX_RETRY_AFTER_SECS: Final = 300.0
"""Longest ``Retry-After`` honoured (a busy server asks for seconds)."""
"""How much of a refusal's HTTP body is kept for the error message."""
_USER_AGENT: Final = f"hetuflow-agent/{__version__}".encode()


AGENT_ID_HEADER: Final = "x-hetuflow-agent-id"
"""Upgrade request header naming the agent, so the server can match it to the token before upgrading."""


async def connect(
    url: ServerUrl,
    token: str | None,
    *,
    agent_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout_secs: float = 10.0,
    max_message_bytes: int = 4 * 1024 * 1024,
) -> WebSocket:
    """Open a WebSocket to ``url`` and complete the upgrade within ``timeout_secs``.

    The request carries ``Authorization: Bearer <token>`` and ``X-Hetuflow-Agent-Id: <agent_id>``.

    Raises ``ConnectFailed`` (DNS, refused, TLS, timeout, not a WebSocket server) or
    ``HandshakeRejected`` (the server answered with an HTTP status such as 401 or 403).
    """
    writer: asyncio.StreamWriter | None = None
    tls_phase = False
    try:
        async with asyncio.timeout(timeout_secs):
            reader, writer = await asyncio.open_connection(url.host, url.port, limit=_READ_CHUNK_BYTES)
            if url.secure:
                # TLS as a second step, so a failure here is reported as TLS and not as "network"
                tls_phase = True
                await writer.start_tls(ssl_context or ssl.create_default_context(), server_hostname=url.host)
                tls_phase = False
            ws = WSConnection(ConnectionType.CLIENT)
            headers = [(b"user-agent", _USER_AGENT)]
            if token:
                headers.append((b"authorization", b"Bearer " + token.encode("ascii")))
            if agent_id:
                headers.append((AGENT_ID_HEADER.encode(), agent_id.encode("ascii")))
            writer.write(ws.send(Request(host=url.host_header, target=url.target, extra_headers=headers)))
            await writer.drain()
            await _await_upgrade(url, reader, ws)
    except BaseException as exc:
        if writer is not None:
            writer.transport.abort()
        if isinstance(exc, WebSocketError | asyncio.CancelledError) or not isinstance(exc, Exception):
            raise
        raise _connect_error(url, exc, timeout_secs, tls_phase) from exc
    return WebSocket(url, reader, writer, ws, max_message_bytes)


async def _await_upgrade(url: ServerUrl, reader: asyncio.StreamReader, ws: WSConnection) -> None:
    """Read until the server accepts the upgrade; raise ``HandshakeRejected`` with its status otherwise."""
    status: int | None = None
    retry_after = 0.0
    body = bytearray()
    while True:
        data = await reader.read(_READ_CHUNK_BYTES)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return
            if isinstance(event, RejectConnection):
                status = event.status_code
                retry_after = _retry_after_secs(event.headers)
                if not event.has_body:
                    raise HandshakeRejected(url.url, status, retry_after_secs=retry_after)
            elif isinstance(event, RejectData):
                body += event.data[: _MAX_REJECT_BODY_BYTES - len(body)]
                if event.body_finished or len(body) >= _MAX_REJECT_BODY_BYTES:
                    raise HandshakeRejected(
                        url.url, status or 0, _short_text(body), retry_after_secs=retry_after
                    )
        if not data:
            if status is not None:
                raise HandshakeRejected(url.url, status, _short_text(body), retry_after_secs=retry_after)
            raise ConnectFailed(url.url, "protocol", f"{url} closed the connection during the upgrade")


def _retry_after_secs(headers: Iterable[tuple[bytes, bytes]]) -> float:
    """The delay a refusal asks for in ``Retry-After`` (delta seconds; an HTTP date or junk counts as none),
    capped so a wrong header cannot park the agent for long."""
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                return min(max(float(value.decode("ascii").strip()), 0.0), _MAX_RETRY_AFTER_SECS)
            except (UnicodeDecodeError, ValueError):
                return 0.0
    return 0.0


class _MaskKeys:
    """Masking keys from ``os.urandom``, fetched in blocks (one per connection: used by its loop only)."""

    __slots__ = ("_block", "_position")

    def __init__(self) -> None:
        self._block = b""
        self._position = 0

    def next_key(self) -> bytes:
        position = self._position
        if position >= len(self._block):
            self._block = os.urandom(_MASK_KEY_BLOCK_BYTES)
            position = 0
        self._position = position + 4
        return self._block[position : position + 4]


def _text_frame(payload: bytes, key: bytes) -> bytes:
    """One complete client text frame (RFC 6455 §5.2) carrying ``payload`` masked with ``key``."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, 0x80 | size))  # FIN + text opcode; MASK bit + 7-bit length
    elif size < 0x10000:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    mask = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(size, "little")
    return header + key + masked


def _frame_header(buffer: bytearray, position: int) -> tuple[int, bool, int, int] | None:
    """The first byte, mask bit, header size and payload length of the frame at ``position``.

    None when the header has not fully arrived yet.
    """
    available = len(buffer) - position
    if available < 2:
        return None
    first, second = buffer[position], buffer[position + 1]
    length = second & 0x7F
    if length == 126:
        if available < 4:
            return None
        return first, bool(second & 0x80), 4, int.from_bytes(buffer[position + 2 : position + 4], "big")
    if length == 127:
        if available < 10:
            return None
        return first, bool(second & 0x80), 10, int.from_bytes(buffer[position + 2 : position + 10], "big")
    return first, bool(second & 0x80), 2, length


def _short_text(body: bytes | bytearray) -> str:
    """A refusal body as one readable line (servers send problem+json or plain text)."""
    return " ".join(bytes(body).decode("utf-8", "replace").split())[:500]


def _connect_error(url: ServerUrl, exc: Exception, timeout_secs: float, tls_phase: bool) -> ConnectFailed:
    """Translate what opening a connection raised into a ``ConnectFailed`` an operator can act on."""
    where = f"{url.host}:{url.port}"
    if tls_phase and not isinstance(exc, ssl.SSLError):
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        return ConnectFailed(url.url, "tls", f"{url}: TLS handshake with {where} failed ({reason})")
    if isinstance(exc, TimeoutError):
        return ConnectFailed(url.url, "timeout", f"{url}: no WebSocket upgrade within {timeout_secs:g} s")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed(url.url, "dns", f"{url}: cannot resolve host {url.host!r} ({exc.strerror})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectFailed(url.url, "tls", f"{url}: TLS certificate not trusted ({exc.verify_message})")
    if isinstance(exc, ssl.SSLError):
        return ConnectFailed(url.url, "tls", f"{url}: TLS handshake failed ({exc.reason or exc})")
    if isinstance(exc, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in str(exc):
        return ConnectFailed(url.url, "refused", f"{url}: connection refused by {where}")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ConnectFailed(url.url, "network", f"{url}: cannot connect to {where} ({reason})")
    if isinstance(exc, LocalProtocolError | RemoteProtocolError):
        return ConnectFailed(url.url, "protocol", f"{url}: not a WebSocket server ({exc})")
    return ConnectFailed(url.url, "network", f"{url}: {type(exc).__name__}: {exc}")


class WebSocket:
    """One open client connection to one server.

    ``send`` may be called from several tasks (writes are serialised); ``recv`` from one task at a
    time. Call ``close`` only once no ``recv`` is pending (cancel the reader first): it reads the
    socket itself to wait for the server's close frame.
    """

    def __init__(
        self,
        url: ServerUrl,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ws: WSConnection,
        max_message_bytes: int,
    ) -> None:
        self.url = url
        self._reader = reader
        self._writer = writer
        self._ws = ws
        self._max_message_bytes = max_message_bytes
        self._send_lock = asyncio.Lock()
        # A masking key must be unpredictable to whoever sees the traffic (RFC 6455 §5.3), hence the
        # OS's entropy, drawn a thousand keys at a time rather than with a system call per frame.
        self._mask_keys = _MaskKeys()
        self._unwritten: list[bytes] = []
        self._flush_scheduled = False
        self._events: deque[Event | str] = deque()
        """wsproto's events, and (as ``str``) the messages cut out by the fast path, in arrival order."""
        self._received = bytearray()
        """Received bytes not parsed yet; they always start at a frame boundary."""
        self._owed = 0
        """Bytes of the frame being handed to wsproto that have not arrived yet."""
        self._fragmented = False
        """True while wsproto assembles a fragmented message (its continuations go to wsproto too)."""
        self._parts: list[str | bytes] = []
        self._size = 0
        self._too_large = False
        self._closed = False

    @property
    def is_open(self) -> bool:
        """True until either side started closing or the socket broke."""
        return not self._closed and self._ws.state is ConnectionState.OPEN

    async def send(self, text: str | bytes) -> None:
        """Send one text message; raises ``ConnectionLost`` when the connection is gone.

        ``bytes`` are sent as they are and must be UTF-8 (the protocol's JSON). The message is
        written at the end of the current loop turn, together with the others sent in it; the call
        waits while the socket's send buffer is full.
        """
        if self._closed or self._ws.state is not ConnectionState.OPEN:
            raise ConnectionLost(self.url.url, f"{self.url}: connection is closing")
        # Appended at once, so messages leave in the order of the calls whoever waits below.
        payload = text.encode() if isinstance(text, str) else text
        self._unwritten.append(_text_frame(payload, self._mask_keys.next_key()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        transport = self._writer.transport
        if (
            self._send_lock.locked()
            or transport.is_closing()
            or transport.get_write_buffer_size() > transport.get_write_buffer_limits()[0]
        ):
            # Only a full send buffer (or a broken socket) needs the wait; skipping it otherwise
            # spares every message a lock and a coroutine.
            async with self._send_lock:
                with self._lost_on_error():
                    await self._writer.drain()

    def _flush(self) -> None:
        """Write the messages sent so far in one go (and before anything written directly)."""
        self._flush_scheduled = False
        if self._unwritten:
            data = b"".join(self._unwritten)
            self._unwritten.clear()
            if not self._writer.transport.is_closing():
                self._writer.write(data)

    async def recv(self) -> str | bytes:
        """Return the next complete message (text as ``str``, binary as ``bytes``).

        Raises ``ConnectionClosed`` when the server closes, ``ConnectionLost`` when the socket breaks,
        and ``MessageTooLarge`` — after discarding it — for a message above the limit; the connection
        stays usable after ``MessageTooLarge``.
        """
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, str):
                    return event
                message = await self._handle(event)
                if message is not None:
                    return message
            with self._lost_on_error():
                data = await self._reader.read(_READ_CHUNK_BYTES)
            if not data:
                self._closed = True
                self._writer.transport.abort()
                raise ConnectionLost(self.url.url, f"{self.url}: connection dropped without a close frame")
            with self._lost_on_error():
                self._parse(data)

    def _parse(self, data: bytes) -> None:
        """Cut complete frames from the received bytes: plain text messages here, the rest by wsproto."""
        buffer = self._received
        buffer += data
        position = 0
        end = len(buffer)
        while position < end:
            if self._owed:  # the rest of a frame wsproto is parsing
                take = min(self._owed, end - position)
                self._to_wsproto(bytes(buffer[position : position + take]))
                self._owed -= take
                position += take
                continue
            header = _frame_header(buffer, position)
            if header is None:
                break  # the header is incomplete
            first, masked, header_size, length = header
            size = header_size + (4 if masked else 0) + length
            if (
                first == _FIN_TEXT
                and not masked
                and not self._fragmented
                and length <= self._max_message_bytes
            ):
                if end - position < size:
                    break  # wait for the whole frame
                payload = bytes(buffer[position + header_size : position + size])
                try:
                    self._events.append(payload.decode())
                except UnicodeDecodeError:
                    self._to_wsproto(bytes(buffer[position : position + size]))  # it says what is wrong
                position += size
                continue
            opcode = first & 0x0F
            if opcode in (_OPCODE_TEXT, _OPCODE_BINARY):
                self._fragmented = not first & 0x80
            elif opcode == _OPCODE_CONTINUATION and first & 0x80:
                self._fragmented = False
            self._owed = size
        del buffer[:position]

    def _to_wsproto(self, data: bytes) -> None:
        self._ws.receive_data(data)
        self._events.extend(self._ws.events())

    async def _handle(self, event: Event) -> str | bytes | None:
        """Apply one wsproto event; return a message when one is complete."""
        if isinstance(event, TextMessage | BytesMessage):
            return self._assemble(event)
        if isinstance(event, Ping):
            async with self._send_lock:
                with self._lost_on_error():
                    self._flush()
                    self._writer.write(self._ws.send(event.response()))
                    await self._writer.drain()
            return None
        if isinstance(event, CloseConnection):
            await self._on_close_frame(event)
        return None  # pongs and anything else carry nothing for us

    def _assemble(self, event: TextMessage | BytesMessage) -> str | bytes | None:
        """Collect fragments; discard (but count) a message once it grows past the limit."""
        chunk = event.data if isinstance(event.data, str) else bytes(event.data)
        self._size += len(chunk.encode()) if isinstance(chunk, str) else len(chunk)
        if self._size > self._max_message_bytes:
            self._too_large = True
            self._parts.clear()
        else:
            self._parts.append(chunk)
        if not event.message_finished:
            return None
        size, too_large, parts = self._size, self._too_large, self._parts
        self._size, self._too_large, self._parts = 0, False, []
        if too_large:
            raise MessageTooLarge(self.url.url, size, self._max_message_bytes)
        if isinstance(event, TextMessage):
            return "".join(p for p in parts if isinstance(p, str))
        return b"".join(p for p in parts if isinstance(p, bytes))

    async def _on_close_frame(self, event: CloseConnection) -> NoReturn:
        """Answer the server's close frame (or a protocol failure wsproto reports as one) and raise."""
        remote = self._ws.state is ConnectionState.REMOTE_CLOSING
        with contextlib.suppress(WebSocketError):
            async with self._send_lock:
                with self._lost_on_error():
                    if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                        reply = event.response() if remote else CloseConnection(code=event.code)
                        self._flush()
                        self._writer.write(self._ws.send(reply))
                        await self._writer.drain()
        self._closed = True
        self._writer.transport.abort()
        if remote:
            raise ConnectionClosed(self.url.url, event.code, event.reason or "")
        raise ConnectionLost(self.url.url, f"{self.url}: WebSocket protocol error ({event.reason})")

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close cleanly: send a close frame, wait briefly for the server's, then drop the socket.

        Never raises: a connection that is already broken is simply released.
        """
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_SECS):
                async with self._send_lock:
                    if self._ws.state is ConnectionState.OPEN:
                        self._flush()
                        self._writer.write(self._ws.send(CloseConnection(code=code, reason=reason)))
                        await self._writer.drain()
                if self._received:  # a frame boundary: what wsproto has not seen yet follows on
                    self._ws.receive_data(bytes(self._received))
                    self._received.clear()
                while self._state() is not ConnectionState.CLOSED:
                    data = await self._reader.read(_READ_CHUNK_BYTES)
                    self._ws.receive_data(data or None)
                    for event in self._ws.events():
                        if isinstance(event, CloseConnection) and self._state() is not ConnectionState.CLOSED:
                            self._writer.write(self._ws.send(event.response()))
                    if not data:
                        break
        except (OSError, TimeoutError, LocalProtocolError, RemoteProtocolError) as exc:
            logger.debug("close of %s ended early: %r", self.url, exc)
        self._release()

    def _state(self) -> ConnectionState:
        # a method, so that type narrowing does not assume the state stays put across awaits
        return self._ws.state

    def abort(self) -> None:
        """Drop the socket at once, without a close handshake."""
        self._closed = True
        self._writer.transport.abort()

    def _release(self) -> None:
        """Close the transport; an SSL shutdown that would block is not waited for."""
        transport = self._writer.transport
        if transport.is_closing():
            return
        transport.close()
        if self.url.secure:
            # an SSL transport waits for the peer's close_notify; do not let a dead peer keep it
            asyncio.get_running_loop().call_later(_CLOSE_TIMEOUT_SECS, transport.abort)

    @contextlib.contextmanager
    def _lost_on_error(self) -> Iterator[None]:
        """Translate socket and wsproto failures of an open connection into ``ConnectionLost``."""
        try:
            yield
        except (OSError, LocalProtocolError, RemoteProtocolError) as exc:
            self._closed = True
            self._writer.transport.abort()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConnectionLost(self.url.url, f"{self.url}: connection lost ({reason})") from exc
