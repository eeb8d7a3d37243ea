"""What a registered agent's frames do on this server.

- ``agent.heartbeat``: answered at once with ``server.heartbeat`` (server time, the request's ``ts`` echoed,
  for the agent's clock), then handed to `Liveness.beat`, which stores it and state-syncs it with the
  others of the next flush; the connection never waits for the database.
- ``task.acquire``: the agent's credits; wakes the dispatcher.
- ``instance.updated`` / ``instance.log``: queued on the `ReportBatcher`, which acks them once stored (a
  final status also tells `Liveness` the agent no longer runs that attempt).
- ``ack``: of a dispatch or command this server sent; a refused dispatch is handed back to the dispatcher.
- ``error``: the agent could not read one of our frames (logged; a dispatch it names is handed back).

Anything else (a second ``agent.register``, a server-only type, garbage) raises ``ProtocolError``, which the
gateway answers with an ``error`` frame and counts.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from hetuflow_core.enums import ProtocolErrorCode
from hetuflow_core.ids import now_ms
from hetuflow_core.protocol import (
    Ack,
    AcquireTaskRequest,
    AgentMessage,
    AgentRegisterRequest,
    Error,
    HeartbeatRequest,
    HeartbeatResponse,
    HeartbeatResponseData,
    ProtocolError,
    TaskInstanceUpdated,
    TaskLogChunk,
    decode,
)
from hetuflow_server.broker import Broker
from hetuflow_server.broker.session import AgentSession

__all__ = ["handle_frame", "receive"]

logger = logging.getLogger(__name__)


async def receive(websocket: WebSocket) -> str | bytes | None:
    """The next message's payload (text or bytes), or None once the agent disconnected."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is not None:
        return str(text)
    return bytes(message.get("bytes") or b"")


def handle_frame(broker: Broker, session: AgentSession, raw: str | bytes) -> None:
    """Apply one frame of a registered agent; ProtocolError when it is not one it may send now."""
    frame = decode(raw, AgentMessage)
    if isinstance(frame, TaskInstanceUpdated | TaskLogChunk):
        broker.reports.submit(session, frame)
        if isinstance(frame, TaskInstanceUpdated) and frame.data.status.is_final:
            broker.liveness.finished(session, frame.data.instance_id)
    elif isinstance(frame, AcquireTaskRequest):
        session.on_acquire(frame.data.free_slots)
        broker.dispatcher.wake()
    elif isinstance(frame, HeartbeatRequest):
        session.send(
            HeartbeatResponse(data=HeartbeatResponseData(server_time_ms=now_ms(), request_ts=frame.ts))
        )
        broker.liveness.beat(session, frame.data.metrics, frame.data.running)
    elif isinstance(frame, Ack):
        refused = session.on_ack(frame.data)
        if refused is not None:
            broker.dispatcher.hand_back([refused], f"refused by the agent: {frame.data.error or 'no reason'}")
    elif isinstance(frame, Error):
        logger.warning(
            "agent %s could not read frame %s: %s: %s",
            session.agent_id,
            frame.data.ref_id,
            frame.data.code,
            frame.data.message,
            extra={"agent_id": session.agent_id, "ref_id": frame.data.ref_id},
        )
        unread = session.on_error(frame.data)
        if unread is not None:
            broker.dispatcher.hand_back([unread], f"the agent could not read it: {frame.data.message}")
    elif isinstance(frame, AgentRegisterRequest):
        raise ProtocolError(ProtocolErrorCode.UNEXPECTED, "already registered on this connection", frame.id)
