"""The agents' WebSocket, from the upgrade request to the end of the connection.

Before the upgrade a connection must find a place among the registrations in progress (else, after a
bounded wait, HTTP 503 with ``Retry-After``: see ``broker.admission``), and its bearer token is checked; a
refusal is a real HTTP answer (401; 403 for a valid token that is not this agent's agent token), so the agent
can tell them apart. The first frame must be ``agent.register`` within ``REGISTER_TIMEOUT_SECS``; the broker
upserts the agent and reconciles its state sync, and a connection that closes before any frame is a
``hetuflow-agent check`` probe. Frames are then handled by ``frames.handle_frame`` until the agent leaves,
the server shuts down (1001), the connection is closed for cause (``MAX_BAD_FRAMES`` bad frames: 1008; its
token revoked or expired: 1008 at once, queued frames dropped) or given up as silent
(`Liveness.watch_silence`). At the end the broker unregisters the session. The ASGI calls on the WebSocket
are the boundary to the network: a failing send ends the connection like a disconnect does.
See docs/architecture.md (Connecting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final, Protocol, cast

from starlette.websockets import WebSocket, WebSocketDisconnect

from hetuflow_core.enums import ProtocolErrorCode, TokenScope
from hetuflow_core.ids import now_ms
from hetuflow_core.protocol import (
    PROTOCOL_VERSION,
    AgentMessage,
    AgentRegisterRequest,
    AgentRegisterResponse,
    ProtocolError,
    RegisterResponseData,
    decode,
    encode,
    is_compatible,
)
from hetuflow_server.auth import Principal, TokenService, guard
from hetuflow_server.broker import Broker
from hetuflow_server.broker.admission import REGISTRATION_RETRY_AFTER_SECS
from hetuflow_server.broker.session import AgentSession, SessionClosed
from hetuflow_server.endpoint.api.problems import problem_for_error, problem_response
from hetuflow_server.endpoint.ws import frames
from hetuflow_server.errors import Forbidden, HetuflowError

__all__ = ["AGENT_ID_HEADER", "MAX_BAD_FRAMES", "REGISTER_TIMEOUT_SECS", "agent_socket"]

logger = logging.getLogger(__name__)

AGENT_ID_HEADER: Final = "x-hetuflow-agent-id"
REGISTER_TIMEOUT_SECS: Final = 10.0
"""How long an accepted connection may take to send its ``agent.register``."""
MAX_BAD_FRAMES: Final = 20
"""Undecodable or unexpected frames one connection may send before it is closed."""
CLOSE_TIMEOUT_SECS: Final = 2.0
"""How long the frames queued before a close (and the close itself) may take to be written."""
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_TRY_AGAIN: Final = 1013
TOKEN_REVOKED: Final = "token revoked or expired"
"""Close reason of a connection whose token was revoked or ran out while it was connected."""


class RegistrationsBusy(HetuflowError):
    """Too many agents are registering with this server right now (HTTP 503 with ``Retry-After``)."""

    code = "registrations-busy"
    status = 503
    title = "Too many agents registering"


class _Container(Protocol):
    @property
    def broker(self) -> Broker: ...

    @property
    def tokens(self) -> TokenService: ...


async def agent_socket(websocket: WebSocket) -> None:
    """The WebSocket endpoint of agents (see the module docstring)."""
    container = cast(_Container, websocket.app.state.hetuflow)
    broker = container.broker
    # Admitted before the token is even checked: in a reconnect storm a refusal must cost next to nothing.
    if not await broker.registrations.enter():
        busy = RegistrationsBusy(
            f"{broker.registrations.limit} agents are registering and more are waiting;"
            " try again after a jittered backoff"
        )
        await _deny(websocket, busy, {"Retry-After": str(REGISTRATION_RETRY_AFTER_SECS)})
        return
    with contextlib.ExitStack() as watching:
        try:
            admitted = await _admitted(websocket, broker, container.tokens, watching)
        finally:
            broker.registrations.leave()
        if admitted is not None:
            await _serve(websocket, broker, *admitted)


async def _admitted(
    websocket: WebSocket, broker: Broker, tokens: TokenService, watching: contextlib.ExitStack
) -> tuple[AgentSession, asyncio.Event] | None:
    """Authenticate, upgrade and register an admitted connection: its session and the event set when its
    token is revoked (watched until ``watching`` closes), or None when it ended."""
    try:
        principal = await _authenticate(websocket)
    except HetuflowError as exc:
        await _deny(websocket, exc)
        return None
    revoked = watching.enter_context(tokens.watch(principal))
    await websocket.accept()
    try:
        if broker.draining.is_set():
            raise _Refused(None, CLOSE_GOING_AWAY, "server shutting down")  # the agent tries another one
        session = await _register(websocket, broker, principal.subject)
    except _Refused as refused:
        # The peer may be gone already (disconnect, or a send after its close): nothing more to tell it.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            if refused.frame is not None:
                await websocket.send_text(refused.frame)
            await websocket.close(refused.code, refused.reason)
        return None
    return None if session is None else (session, revoked)


# -- before the upgrade --------------------------------------------------------------------------------


async def _authenticate(websocket: WebSocket) -> Principal:
    """The agent token's principal (its subject is the agent id); Unauthorized (401) or Forbidden (403)
    otherwise."""
    principal = await guard.authorize(websocket, TokenScope.AGENT)
    claimed = websocket.headers.get(AGENT_ID_HEADER)
    if claimed is not None and claimed != principal.subject:
        raise Forbidden(f"this token belongs to agent {principal.subject!r}, not {claimed!r}")
    return principal


async def _deny(websocket: WebSocket, exc: HetuflowError, headers: dict[str, str] | None = None) -> None:
    problem = problem_for_error(exc, websocket.url.path)
    try:
        await websocket.send_denial_response(problem_response(problem, headers))
    except RuntimeError:
        # A server without the denial-response extension: refuse the upgrade; the client sees 403.
        await websocket.close(CLOSE_POLICY_VIOLATION, exc.detail[:120])


# -- registration --------------------------------------------------------------------------------------


class _Refused(Exception):
    """Registration refused: the frame telling the agent why, then the close code."""

    def __init__(self, frame: str | None, code: int, reason: str) -> None:
        super().__init__(reason)
        self.frame = frame
        self.code = code
        self.reason = reason


def _refusal(error: str, code: int) -> _Refused:
    response = AgentRegisterResponse(
        data=RegisterResponseData(accepted=False, error=error, server_time_ms=now_ms())
    )
    return _Refused(encode(response).decode("utf-8"), code, error[:120])


def _protocol_refusal(exc: ProtocolError) -> _Refused:
    return _Refused(encode(exc.to_frame()).decode("utf-8"), CLOSE_POLICY_VIOLATION, exc.message[:120])


async def _register(websocket: WebSocket, broker: Broker, agent_id: str) -> AgentSession | None:
    """Run the registration; the session, or None when the client left without a word (a probe)."""
    try:
        async with asyncio.timeout(REGISTER_TIMEOUT_SECS):
            raw = await frames.receive(websocket)
    except TimeoutError:
        raise _protocol_refusal(
            ProtocolError(
                ProtocolErrorCode.UNEXPECTED, f"no agent.register within {REGISTER_TIMEOUT_SECS:g} s"
            )
        ) from None
    if raw is None:
        return None
    try:
        frame = decode(raw, AgentMessage)
    except ProtocolError as exc:
        raise _protocol_refusal(exc) from None
    if not isinstance(frame, AgentRegisterRequest):
        raise _protocol_refusal(
            ProtocolError(ProtocolErrorCode.UNEXPECTED, "the first frame must be agent.register", frame.id)
        )
    data = frame.data
    if not is_compatible(data.protocol_version):
        raise _refusal(
            f"protocol {data.protocol_version} is not compatible with this server's {PROTOCOL_VERSION}",
            CLOSE_PROTOCOL_ERROR,
        )
    if data.agent_id != agent_id:
        raise _protocol_refusal(
            ProtocolError(
                ProtocolErrorCode.UNAUTHORIZED,
                f"registering as {data.agent_id!r} with a token of agent {agent_id!r}",
                frame.id,
            )
        )
    try:
        return await broker.register(websocket, data)
    except HetuflowError as exc:
        logger.warning(
            "registration of agent %s failed: %s", agent_id, exc.detail, extra={"agent_id": agent_id}
        )
        raise _refusal(f"registration failed, try again: {exc.detail}", CLOSE_TRY_AGAIN) from None


# -- serving -------------------------------------------------------------------------------------------


async def _serve(websocket: WebSocket, broker: Broker, session: AgentSession, revoked: asyncio.Event) -> None:
    extra = {"agent_id": session.agent_id}
    reader = asyncio.create_task(
        _read_loop(websocket, broker, session), name=f"hetuflow:agent-read:{session.agent_id}"
    )
    writer = asyncio.create_task(session.write_loop(), name=f"hetuflow:agent-write:{session.agent_id}")
    aborted = asyncio.create_task(session.aborted.wait(), name=f"hetuflow:agent-abort:{session.agent_id}")
    draining = asyncio.create_task(broker.draining.wait(), name=f"hetuflow:agent-drain:{session.agent_id}")
    revocation = asyncio.create_task(revoked.wait(), name=f"hetuflow:agent-token:{session.agent_id}")
    tasks = {reader, writer, aborted, draining, revocation}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if revocation in done:
            await _close_revoked(websocket, session, writer)
        elif draining in done:
            # After the dispatch round in flight (it holds the lock) has queued its frames, which the writer
            # then sends before the close: an agent that holds work ahead always has credits, and a dispatch
            # pushed into a closed session would come back as an attempt lost without having run.
            async with broker.dispatcher.lock:
                session.draining = True
                session.close(CLOSE_GOING_AWAY, "server shutting down")  # the agent goes to another server
        if not session.open and not writer.done() and aborted not in done:
            # A close was asked for (shutdown, bad frames, replaced): write what is queued, then the close.
            await asyncio.wait({writer}, timeout=CLOSE_TIMEOUT_SECS)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, WebSocketDisconnect | RuntimeError | SessionClosed):
                # The peer went away while we wrote, or we wrote after the close: a normal end.
                logger.info("connection of agent %s ended: %r", session.agent_id, result, extra=extra)
            elif isinstance(result, Exception):
                logger.error(
                    "connection of agent %s failed",
                    session.agent_id,
                    exc_info=(type(result), result, result.__traceback__),
                    extra=extra,
                )
        await broker.unregister(session)


async def _close_revoked(websocket: WebSocket, session: AgentSession, writer: asyncio.Task[None]) -> None:
    """The connection's token was revoked (or expired): not one more frame, then the close.

    Frames still queued (dispatches among them, with their env) are not written; the broker hands the
    dispatches back when the session is unregistered. The agent sees the close, reconnects, and is refused
    with 401 until it is given a new token.
    """
    logger.warning(
        "the token of agent %s was revoked; closing its connection",
        session.agent_id,
        extra={"agent_id": session.agent_id},
    )
    session.close(CLOSE_POLICY_VIOLATION, TOKEN_REVOKED)  # nothing more is queued from here
    writer.cancel()
    await asyncio.wait({writer})
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECS):
            await websocket.close(CLOSE_POLICY_VIOLATION, TOKEN_REVOKED)


async def _read_loop(websocket: WebSocket, broker: Broker, session: AgentSession) -> None:
    loop = asyncio.get_running_loop()
    while session.open:
        await broker.reports.wait_room()
        # Silence counts from here: while the server was not reading (the report queue full), frames the agent
        # sent waited in the socket, and the agent was not silent.
        session.last_seen = loop.time()
        raw = await frames.receive(websocket)
        if raw is None:
            return
        session.last_seen = loop.time()
        try:
            frames.handle_frame(broker, session, raw)
        except ProtocolError as exc:
            session.bad_frames += 1
            session.send(exc.to_frame())
            if session.bad_frames >= MAX_BAD_FRAMES:
                logger.warning(
                    "agent %s sent %d bad frames; closing its connection",
                    session.agent_id,
                    session.bad_frames,
                    extra={"agent_id": session.agent_id},
                )
                session.close(CLOSE_POLICY_VIOLATION, f"{session.bad_frames} malformed or unexpected frames")
                return
