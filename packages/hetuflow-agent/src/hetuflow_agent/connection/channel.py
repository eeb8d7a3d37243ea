"""One upgraded WebSocket seen as protocol frames.

The channel encodes what the agent sends and decodes what the server sends. A server message that
cannot be used — too large, not JSON, of an unknown type, invalid — is answered with an ``error`` frame
naming it and skipped: a bad frame never ends the connection. Every message received, good or bad,
counts as a sign of life for the session's watchdog.
"""

from __future__ import annotations

import asyncio
import logging

from hetuflow_agent.connection.websocket import WebSocket
from hetuflow_agent.errors import MessageTooLarge
from hetuflow_core.enums import ProtocolErrorCode
from hetuflow_core.protocol import (
    Ack,
    AgentCommand,
    AgentRegisterResponse,
    Error,
    ErrorData,
    HeartbeatResponse,
    Message,
    ProtocolError,
    ScheduledTask,
    ServerMessage,
    decode,
    encode,
)

__all__ = ["Channel", "SessionStats"]

logger = logging.getLogger(__name__)

ServerFrame = AgentRegisterResponse | HeartbeatResponse | ScheduledTask | AgentCommand | Ack | Error


class SessionStats:
    """Counters over the life of a session (all connections)."""

    __slots__ = ("bad_frames", "connections")

    def __init__(self) -> None:
        self.connections = 0
        """Connections that completed registration."""
        self.bad_frames = 0
        """Server messages refused (each answered with an ``error`` frame)."""


class Channel:
    """Frames over one ``WebSocket``; ``last_received`` is the loop time of the latest message."""

    def __init__(self, ws: WebSocket, *, max_message_bytes: int, stats: SessionStats) -> None:
        self.ws = ws
        self.url = ws.url
        self._max_message_bytes = max_message_bytes
        self._stats = stats
        self.last_received = asyncio.get_running_loop().time()

    async def send(self, frame: Message) -> None:
        """Send one frame; raises ``ConnectionLost`` when the connection is gone."""
        await self.ws.send(encode(frame))

    async def receive(self) -> ServerFrame | None:
        """The next server frame; None for a message that was refused (and answered with ``error``)."""
        try:
            raw = await self.ws.recv()
        except MessageTooLarge as exc:
            self._refused(exc.message)
            await self.send(Error(data=ErrorData(code=ProtocolErrorCode.TOO_LARGE, message=exc.message)))
            return None
        finally:
            self.last_received = asyncio.get_running_loop().time()
        try:
            frame: ServerFrame = decode(raw, ServerMessage, max_bytes=self._max_message_bytes)
        except ProtocolError as exc:
            self._refused(f"{exc.code}: {exc.message}")
            await self.send(exc.to_frame())
            return None
        return frame

    def _refused(self, reason: str) -> None:
        self._stats.bad_frames += 1
        logger.warning("refused a message from %s: %s", self.url, reason, extra={"server": self.url.url})
