"""A real WebSocket agent endpoint for the agent's tests, and helpers to run agents against it.

``ProtocolServer`` is a small but real hetuflow agent endpoint on 127.0.0.1 (wsproto over asyncio
streams, optionally TLS): it checks the token before the upgrade (401/403), answers registration and
heartbeats, acks reports, and lets a test dispatch tasks, send anything (garbage, fragments, pings,
oversized messages), drop a connection uncleanly or close it cleanly. This module holds no tests; the
``test_connection_*``, ``test_agent_cli`` and ``test_application`` modules import from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from hetuflow_agent.application import AgentApplication
from hetuflow_agent.config import AgentConfig, Setting, load_config
from hetuflow_core.enums import CommandKind, InstanceStatus
from hetuflow_core.ids import now_ms, uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.protocol import (
    Ack,
    AckData,
    AgentMessage,
    AgentRegisterRequest,
    AgentRegisterResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    HeartbeatResponseData,
    RegisterResponseData,
    ScheduledTask,
    ScheduledTaskData,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    TaskLogChunk,
    decode,
    encode,
)

TOKEN = "test-token"
AGENT_ID = "agent-1"
WAIT_SECS = 10.0


class ServerConnection:
    """One accepted agent connection as the test server sees it."""

    def __init__(self, server: ProtocolServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.ws = WSConnection(ConnectionType.SERVER)
        self.frames: list[Any] = []
        self.raw: list[str | bytes] = []
        self.pongs: list[bytes] = []
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self.upgraded = asyncio.Event()
        self.headers: dict[str, str] = {}
        self._changed = asyncio.Condition()
        self._parts: list[str | bytes] = []

    # ---------------------------------------------------------------- test controls

    async def send_frame(self, frame: Any) -> None:
        await self.send_text(encode(frame).decode())

    async def send_text(self, text: str) -> None:
        await self._write(self.ws.send(Message(data=text)))

    async def send_fragments(self, text: str, pieces: int) -> None:
        step = max(len(text) // pieces, 1)
        chunks = [text[i : i + step] for i in range(0, len(text), step)]
        for i, chunk in enumerate(chunks):
            await self._write(self.ws.send(TextMessage(data=chunk, message_finished=i == len(chunks) - 1)))

    async def ping(self, payload: bytes) -> None:
        await self._write(self.ws.send(Ping(payload=payload)))

    def drop(self) -> None:
        """End the TCP connection without a close frame."""
        self.writer.transport.abort()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.ws.state is ConnectionState.OPEN:
            await self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self.closed.wait()
        self.writer.transport.abort()

    async def expect(
        self, kind: type[Any], predicate: Callable[[Any], bool] = lambda _: True, within: float = WAIT_SECS
    ) -> Any:
        """The first received frame (old or new) of type ``kind`` matching ``predicate``."""
        async with asyncio.timeout(within):
            async with self._changed:
                while True:
                    for frame in self.frames:
                        if isinstance(frame, kind) and predicate(frame):
                            return frame
                    await self._changed.wait()

    async def wait_for(self, condition: Callable[[], bool], within: float = WAIT_SECS) -> None:
        async with asyncio.timeout(within):
            async with self._changed:
                await self._changed.wait_for(condition)

    def of(self, kind: type[Any]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    # ---------------------------------------------------------------- protocol

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def serve(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                self.ws.receive_data(data or None)
                for event in self.ws.events():
                    await self._on_event(event)
                if not data:
                    break
        except (ConnectionError, OSError, RemoteProtocolError):
            return  # a client speaking TLS or garbage to us: the connection just ends
        finally:
            self.closed.set()
            self.writer.transport.abort()
            async with self._changed:
                self._changed.notify_all()

    async def _on_event(self, event: Any) -> None:
        if isinstance(event, Request):
            self.headers = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
            status = self.server.check_auth(self.headers)
            headers: list[tuple[bytes, bytes]] = []
            if status is None and self.server.busy_refusals > 0:
                self.server.busy_refusals -= 1
                status, headers = 503, [(b"Retry-After", b"%g" % self.server.retry_after_secs)]
            if status is not None:
                body = b'{"title": "refused by the test server"}'
                await self._write(
                    self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
                    + self.ws.send(RejectData(data=body))
                )
                self.writer.transport.abort()
                return
            await self._write(self.ws.send(AcceptConnection()))
            self.upgraded.set()
            self.server.connections.append(self)
            await self.server._notify()
        elif isinstance(event, TextMessage | BytesMessage):
            self._parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
            if event.message_finished:
                parts, self._parts = self._parts, []
                text = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)  # type: ignore[arg-type]
                await self._on_message(text)
        elif isinstance(event, Pong):
            self.pongs.append(bytes(event.payload))
            await self._notify()
        elif isinstance(event, Ping):
            await self._write(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self.close_code is None:  # wsproto adds a 1006 at EOF even after a clean close
                self.close_code = event.code
            if self.ws.state is ConnectionState.REMOTE_CLOSING:
                await self._write(self.ws.send(event.response()))
            self.closed.set()
            await self._notify()

    async def _on_message(self, text: str | bytes) -> None:
        self.raw.append(text)
        frame = decode(text, AgentMessage)
        self.frames.append(frame)
        server = self.server
        if isinstance(frame, AgentRegisterRequest):
            await self.send_frame(AgentRegisterResponse(data=server.register_response(frame)))
        elif isinstance(frame, HeartbeatRequest) and server.answer_heartbeats:
            reply = HeartbeatResponseData(
                server_time_ms=now_ms() + server.clock_offset_ms, request_ts=frame.ts
            )
            await self.send_frame(HeartbeatResponse(data=reply))
        elif isinstance(frame, TaskInstanceUpdated | TaskLogChunk) and server.auto_ack:
            await self.send_frame(Ack(data=AckData(ack_id=frame.id)))
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


class ProtocolServer:
    """A real WebSocket agent endpoint on 127.0.0.1 with scriptable behaviour."""

    def __init__(self) -> None:
        self.tokens = {TOKEN: AGENT_ID}
        self.auto_ack = True
        self.answer_heartbeats = True
        self.accept = True
        self.busy_refusals = 0
        """Upgrades still to refuse with 503 and ``Retry-After: retry_after_secs`` (a busy server)."""
        self.retry_after_secs = 1.0
        self.kill: list[Any] = []
        self.clock_offset_ms = 0
        self.heartbeat_interval_secs = 5.0
        self.agent_timeout_secs = 15.0
        self.connections: list[ServerConnection] = []
        self.attempts = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._all: list[ServerConnection] = []
        self._changed = asyncio.Condition()
        self.port = 0
        self.secure = False

    @property
    def url(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://127.0.0.1:{self.port}"

    async def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.secure = tls is not None
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (handlers end on their own, never cancelled)."""
        if self._server is not None:
            self._server.close()
        for conn in self._all:
            conn.drop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def check_auth(self, headers: dict[str, str]) -> int | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        sub = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if sub is None:
            return 401
        if headers.get("x-hetuflow-agent-id") != sub:
            return 403
        return None

    def register_response(self, frame: AgentRegisterRequest) -> RegisterResponseData:
        return RegisterResponseData(
            accepted=self.accept,
            error=None if self.accept else "agent disabled",
            server_time_ms=now_ms() + self.clock_offset_ms,
            heartbeat_interval_secs=self.heartbeat_interval_secs,
            agent_timeout_secs=self.agent_timeout_secs,
            kill=list(self.kill),
        )

    async def connection(self, index: int, within: float = WAIT_SECS) -> ServerConnection:
        """The ``index``-th upgraded connection, waiting for it."""
        async with asyncio.timeout(within):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.connections) > index)
        return self.connections[index]

    async def registered(self, index: int, within: float = WAIT_SECS) -> ServerConnection:
        """The ``index``-th connection once its registration arrived."""
        conn = await self.connection(index, within)
        await conn.expect(AgentRegisterRequest, within=within)
        return conn

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts += 1
        conn = ServerConnection(self, reader, writer)
        self._all.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await conn.serve()
        finally:
            self._tasks.discard(task)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


@contextlib.asynccontextmanager
async def running_server() -> AsyncIterator[ProtocolServer]:
    server = ProtocolServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def free_port() -> int:
    """A port nothing listens on (bound and released), for connection-refused cases."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def agent_config(workdir: Path, *servers: str, **settings: Any) -> AgentConfig:
    """A checked config for a test agent: fast reconnects, short drains, the test token and id."""
    values: dict[str, Any] = {
        "servers": list(servers),
        "token": TOKEN,
        "id": AGENT_ID,
        "workdir": str(workdir),
        "capacity": 2,
        "prefetch": 0,  # credit arithmetic without a window; tests of the window set it
        "backoff_initial_secs": 0.05,
        "backoff_max_secs": 0.2,
        "connect_timeout_secs": 5.0,
        "drain_timeout_secs": 2.0,
        "flush_timeout_secs": 2.0,
        "kill_grace_secs": 0.5,
    } | settings
    return load_config(environ={}, overrides=[Setting(key, value, "test") for key, value in values.items()])


@contextlib.asynccontextmanager
async def running_agent(config: AgentConfig, **options: Any) -> AsyncIterator[AgentApplication]:
    """An ``AgentApplication`` (with keyword ``options``) started in this event loop, stopped at exit."""
    app = AgentApplication(config, **options)
    await app.start()
    try:
        yield app
    finally:
        await asyncio.wait_for(app.stop(), 30)


def dispatch(script: str = "echo hi", *, fire_in_secs: float = 0.0, **config: Any) -> ScheduledTask:
    """A dispatch of a bash script, due now (or ``fire_in_secs`` from now)."""
    now = datetime.now(UTC)
    return ScheduledTask(
        data=ScheduledTaskData(
            instance_id=uuid7(),
            task_id=uuid7(),
            job_id=uuid7(),
            attempt=1,
            scheduled_at=now,
            fire_at=now + timedelta(seconds=fire_in_secs),
            config=JobConfig(command=CommandKind.BASH, script=script, **config),
        )
    )


async def eventually(condition: Callable[[], bool], within: float = WAIT_SECS) -> None:
    """Wait until ``condition()`` holds (polling; for state that has no event to wait on)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the state has no event; polling is the point
            await asyncio.sleep(0.01)


async def start_running(conn: ServerConnection, script: str = "sleep 30") -> ScheduledTask:
    """Dispatch ``script`` over ``conn`` and wait until the agent reports it running."""
    task = dispatch(script)
    await conn.send_frame(task)
    await conn.expect(
        TaskInstanceUpdated,
        lambda f: f.data.instance_id == task.data.instance_id and f.data.status is InstanceStatus.RUNNING,
    )
    return task


def updates_of(conn: ServerConnection, instance_id: UUID) -> list[TaskInstanceUpdatedData]:
    return [f.data for f in conn.of(TaskInstanceUpdated) if f.data.instance_id == instance_id]


def final_update(instance_id: UUID) -> Callable[[Any], bool]:
    return lambda f: f.data.instance_id == instance_id and f.data.status.is_final
