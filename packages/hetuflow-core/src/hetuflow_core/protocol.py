"""The WebSocket protocol between hetuflow-server and hetuflow-agent, as docs/protocol.md describes it.

Every frame is one JSON text message, an envelope ``{"type", "id", "ts", "data"}``; each frame class below
is one ``type`` of the tagged union ``Message`` (``AgentMessage`` and ``ServerMessage`` by sender).
``decode`` raises ``ProtocolError`` and never any other exception for anything malformed, oversized,
unknown or invalid. State-changing frames are acked by ``id``, resent after a reconnect and applied once.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar
from uuid import UUID

import msgspec

from hetuflow_core.agent import AgentCapabilities, AgentMetrics
from hetuflow_core.enums import (
    AgentCommandKind,
    AgentStatus,
    InstanceStatus,
    LogStream,
    ProtocolErrorCode,
)
from hetuflow_core.ids import new_message_id, now_ms
from hetuflow_core.job import JobConfig
from hetuflow_core.task import InstanceMetrics
from hetuflow_core.types import INT32_MAX, INT64_MAX, AgentId, AwareDatetime, Int32, Labels, Parameters

__all__ = [
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "Ack",
    "AckData",
    "AcquireTaskData",
    "AcquireTaskRequest",
    "AgentCommand",
    "AgentCommandData",
    "AgentMessage",
    "AgentRegisterData",
    "AgentRegisterRequest",
    "AgentRegisterResponse",
    "Error",
    "ErrorData",
    "HeartbeatData",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "HeartbeatResponseData",
    "Message",
    "ProtocolError",
    "RegisterResponseData",
    "RunningInstance",
    "ScheduledTask",
    "ScheduledTaskData",
    "ServerMessage",
    "TaskInstanceUpdated",
    "TaskInstanceUpdatedData",
    "TaskLogChunk",
    "TaskLogChunkData",
    "decode",
    "encode",
    "is_compatible",
]

PROTOCOL_VERSION: Final = "1.0"
"""``major.minor``; peers with the same major understand each other."""

MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
"""Largest frame ``decode`` accepts by default (a log chunk batch stays far below this)."""

MAX_ERROR_MESSAGE_CHARS: Final = 1024
"""``ProtocolError`` messages are cut to this length (they quote the offending input)."""

MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799_999)]  # up to 9999-12-31T23:59:59.999Z
Seq = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


class ProtocolError(Exception):
    """A frame could not be decoded or is not allowed; ``code`` says why, stably.

    The only exception ``decode`` raises. ``ref_id`` is the offending frame's id when it could be read.
    """

    def __init__(self, code: ProtocolErrorCode, message: str, ref_id: str | None = None) -> None:
        # msgspec quotes the offending value, which may be megabytes long: keep the message fit for a
        # log line and for ``ErrorData.message``, else the error frame itself would be refused.
        if len(message) > MAX_ERROR_MESSAGE_CHARS:
            message = message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref_id = ref_id

    def to_frame(self) -> Error:
        """The ``error`` frame that tells the peer about this problem."""
        return Error(data=ErrorData(code=self.code, message=self.message, ref_id=self.ref_id))


def is_compatible(version: str) -> bool:
    """True when a peer speaking ``version`` can talk to us (same major number)."""
    major, _, _ = version.partition(".")
    return major == PROTOCOL_VERSION.partition(".")[0]


class _Frame(msgspec.Struct, kw_only=True, tag_field="type"):
    """Envelope fields shared by every frame."""

    id: MessageId = msgspec.field(default_factory=new_message_id)
    ts: EpochMs = msgspec.field(default_factory=now_ms)


# ---------------------------------------------------------------- payloads


class RunningInstance(msgspec.Struct, kw_only=True):
    """An attempt an agent is still running, listed at registration for state sync."""

    instance_id: UUID
    task_id: UUID
    status: InstanceStatus
    started_at: AwareDatetime | None = None


class AgentRegisterData(msgspec.Struct, kw_only=True):
    """Who the agent is, what it can do, and what it is still running."""

    agent_id: AgentId
    name: Annotated[str, msgspec.Meta(max_length=255)]
    labels: Labels = {}
    capabilities: AgentCapabilities
    running: Annotated[list[RunningInstance], msgspec.Meta(max_length=10_000)] = []
    protocol_version: Annotated[str, msgspec.Meta(max_length=16)] = PROTOCOL_VERSION


class RegisterResponseData(msgspec.Struct, kw_only=True):
    """Outcome of registration; ``kill`` lists reported instances the agent must stop."""

    accepted: bool
    error: str | None = None
    server_id: UUID | None = None
    server_time_ms: EpochMs = 0
    protocol_version: str = PROTOCOL_VERSION
    heartbeat_interval_secs: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    agent_timeout_secs: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    keep: list[UUID] = []
    kill: list[UUID] = []


class HeartbeatData(msgspec.Struct, kw_only=True):
    """Agent liveness, load, and the instances it is running right now."""

    status: AgentStatus = AgentStatus.ONLINE
    metrics: AgentMetrics = msgspec.field(default_factory=AgentMetrics)
    running: Annotated[list[UUID], msgspec.Meta(max_length=10_000)] = []


class HeartbeatResponseData(msgspec.Struct, kw_only=True):
    """Server clock at reply time, to correct the agent's timer (``request_ts`` echoes the request)."""

    server_time_ms: EpochMs
    request_ts: EpochMs


class AcquireTaskData(msgspec.Struct, kw_only=True):
    """How many more dispatches the agent can hold."""

    free_slots: Annotated[int, msgspec.Meta(ge=0, le=10_000)]


class TaskInstanceUpdatedData(msgspec.Struct, kw_only=True):
    """A state change of one attempt. ``seq`` grows per instance so replays are idempotent."""

    instance_id: UUID
    task_id: UUID
    status: InstanceStatus
    seq: Seq = 0
    at: AwareDatetime | None = None
    exit_code: Int32 | None = None
    signal: Int32 | None = None
    error: Annotated[str, msgspec.Meta(max_length=65_536)] | None = None
    output: Annotated[str, msgspec.Meta(max_length=1_048_576)] = ""
    output_truncated: bool = False
    metrics: InstanceMetrics | None = None


class TaskLogChunkData(msgspec.Struct, kw_only=True):
    """A batch of raw output bytes of one stream (base64 on the wire, so any bytes survive)."""

    instance_id: UUID
    stream: LogStream
    seq: Seq
    content: Annotated[bytes, msgspec.Meta(max_length=1_048_576)]


class AckData(msgspec.Struct, kw_only=True):
    """Acknowledges the frame with id ``ack_id``; ``ok`` is false when it was refused."""

    ack_id: MessageId
    ok: bool = True
    error: str | None = None


class ScheduledTaskData(msgspec.Struct, kw_only=True):
    """One dispatched attempt: what to run and when (``fire_at``, server clock)."""

    instance_id: UUID
    task_id: UUID
    job_id: UUID
    attempt: Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)]
    scheduled_at: AwareDatetime
    fire_at: AwareDatetime
    config: JobConfig
    parameters: Parameters = {}


class AgentCommandData(msgspec.Struct, kw_only=True):
    """An order outside of dispatch: cancel or kill an instance, drain, shut down, relabel."""

    command: AgentCommandKind
    instance_id: UUID | None = None
    labels: Labels | None = None
    reason: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class ErrorData(msgspec.Struct, kw_only=True):
    """Why a frame was refused; ``ref_id`` names it when its id could be read."""

    code: ProtocolErrorCode
    message: Annotated[str, msgspec.Meta(max_length=4096)]
    ref_id: str | None = None


# ---------------------------------------------------------------- frames: agent → server


class AgentRegisterRequest(_Frame, tag="agent.register"):
    """First frame of every connection."""

    data: AgentRegisterData


class HeartbeatRequest(_Frame, tag="agent.heartbeat"):
    """Sent every heartbeat interval."""

    data: HeartbeatData


class AcquireTaskRequest(_Frame, tag="task.acquire"):
    """Credits: the agent can take ``free_slots`` more dispatches."""

    data: AcquireTaskData


class TaskInstanceUpdated(_Frame, tag="instance.updated"):
    """Status report of one attempt; acked."""

    data: TaskInstanceUpdatedData


class TaskLogChunk(_Frame, tag="instance.log"):
    """Output of one attempt; acked."""

    data: TaskLogChunkData


class Ack(_Frame, tag="ack"):
    """Either side acknowledges a state-changing frame."""

    data: AckData


# ---------------------------------------------------------------- frames: server → agent


class AgentRegisterResponse(_Frame, tag="agent.registered"):
    """Reply to registration."""

    data: RegisterResponseData


class HeartbeatResponse(_Frame, tag="server.heartbeat"):
    """Reply to a heartbeat."""

    data: HeartbeatResponseData


class ScheduledTask(_Frame, tag="task.dispatch"):
    """Run this attempt at ``fire_at``; acked by the agent."""

    data: ScheduledTaskData


class AgentCommand(_Frame, tag="agent.command"):
    """An order for the agent; acked."""

    data: AgentCommandData


class Error(_Frame, tag="error"):
    """A frame was refused."""

    data: ErrorData


AgentMessage = (
    AgentRegisterRequest
    | HeartbeatRequest
    | AcquireTaskRequest
    | TaskInstanceUpdated
    | TaskLogChunk
    | Ack
    | Error
)
ServerMessage = AgentRegisterResponse | HeartbeatResponse | ScheduledTask | AgentCommand | Ack | Error
Message = (
    AgentRegisterRequest
    | HeartbeatRequest
    | AcquireTaskRequest
    | TaskInstanceUpdated
    | TaskLogChunk
    | Ack
    | AgentRegisterResponse
    | HeartbeatResponse
    | ScheduledTask
    | AgentCommand
    | Error
)

M = TypeVar("M")

_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_id_probe = msgspec.json.Decoder(dict[str, Any])


def encode(message: Message) -> bytes:
    """Serialise a frame to JSON bytes (send as a WebSocket text frame)."""
    return _encoder.encode(message)


def decode(frame: bytes | str, type: Any = Message, *, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """Decode one frame into a member of ``type`` (default: any ``Message``).

    Pass ``AgentMessage`` or ``ServerMessage`` to accept only what the peer may send. Raises
    ``ProtocolError`` — and nothing else — when the frame is too large, not UTF-8 JSON, of an unknown
    ``type``, or fails validation.
    """
    size = len(frame.encode("utf-8", "surrogatepass")) if isinstance(frame, str) else len(frame)
    if size > max_bytes:
        raise ProtocolError(ProtocolErrorCode.TOO_LARGE, f"frame of {size} bytes exceeds {max_bytes}")
    decoder = _decoders.get(type)
    if decoder is None:
        decoder = _decoders[type] = msgspec.json.Decoder(type)
    try:
        if isinstance(frame, str):
            frame = frame.encode("utf-8")
        return decoder.decode(frame)
    except msgspec.ValidationError as exc:
        ref_id = _probe_id(frame)
        code = ProtocolErrorCode.INVALID
        if "Invalid value" in str(exc) and "`$.type`" in str(exc):
            code = ProtocolErrorCode.UNKNOWN_TYPE
        raise ProtocolError(code, str(exc), ref_id) from None
    except (msgspec.DecodeError, UnicodeError, RecursionError, ValueError, TypeError) as exc:
        raise ProtocolError(ProtocolErrorCode.MALFORMED, f"malformed frame: {exc}") from None


def _probe_id(frame: bytes | str) -> str | None:
    """The ``id`` of a frame that parsed as JSON but failed validation, if it has a usable one."""
    try:
        obj = _id_probe.decode(frame)
    except Exception:  # the frame already failed; the id is only a courtesy
        return None
    ref = obj.get("id")
    return ref if isinstance(ref, str) and len(ref) <= 64 else None
