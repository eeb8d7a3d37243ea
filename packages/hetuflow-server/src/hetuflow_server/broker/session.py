"""One registered agent connection as the server holds it: frames to send, credits, unacked dispatches.

An ``AgentSession`` is created by the gateway once an agent's registration is accepted and lives as long as
the WebSocket. Everything that wants to talk to the agent (the dispatcher, the command router, the report
batcher sending acks) calls ``send``/``push``/``command``, which only queue the frame: one writer task per
session (``write_loop``) puts frames on the wire in order, so a slow agent never blocks the dispatcher or
other agents.

Credits follow the agent's rule (docs/agent.md): its latest ``task.acquire`` says how many attempts it can
take counting every dispatch it acked so far, so the credits are ``free_slots`` minus the dispatches sent and
not yet acked when that frame arrived, minus one per dispatch sent afterwards. Whatever it announces, an agent
never holds more than its capacity plus its prefetch window (``capabilities.prefetch``, at most its
capacity) of attempts: ``held`` counts the ones pushed (or kept at registration) that it has not reported
ended. ``known`` is the set of
attempts this connection may legitimately hold (listed at registration or pushed here); the heartbeat state
sync uses it to find attempts that were dispatched over a connection the agent had already left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple
from uuid import UUID

import msgspec
from starlette.websockets import WebSocket

from hetuflow_core.enums import AgentCommandKind, AgentStatus, CommandKind
from hetuflow_core.protocol import (
    AckData,
    AgentCommand,
    AgentCommandData,
    AgentRegisterData,
    ErrorData,
    ScheduledTask,
    ScheduledTaskData,
    ServerMessage,
    encode,
)
from hetuflow_server.service import AgentCapacity, Dispatch

__all__ = ["MAX_QUEUED_FRAMES", "AgentSession", "SessionClosed"]

logger = logging.getLogger(__name__)

MAX_QUEUED_FRAMES: Final = 20_000
"""Frames waiting for a slow agent beyond which its connection is given up (it stopped reading)."""


class SessionClosed(Exception):
    """The session no longer takes frames: its connection is closing or gone."""


class _Frame(NamedTuple):
    text: str
    instance_id: UUID | None  # set for a dispatch: handed back when it was never written


class _Close(NamedTuple):
    code: int
    reason: str


class AgentSession:
    """The server side of one agent connection (see the module docstring)."""

    def __init__(
        self,
        websocket: WebSocket,
        data: AgentRegisterData,
        *,
        status: AgentStatus = AgentStatus.ONLINE,
        holding: Iterable[UUID] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.websocket = websocket
        self.agent_id = data.agent_id
        self.labels: dict[str, str] = dict(data.labels if labels is None else labels)
        """The labels work is routed by: the stored ones (an operator's, when locked), not the declared."""
        self.commands: list[CommandKind] = list(data.capabilities.commands)
        self.capacity = data.capabilities.capacity
        prefetch = data.capabilities.prefetch
        self.max_held = self.capacity + min(0 if prefetch is msgspec.UNSET else prefetch, self.capacity)
        """Most attempts the agent may hold at once: running, and dispatched ahead of a free slot."""
        self.held: set[UUID] = set(
            (item.instance_id for item in data.running if not item.status.is_final)
            if holding is None
            else holding
        )
        """Attempts on the agent as far as this connection knows: pushed or kept, not reported ended."""
        self.draining = status in (AgentStatus.DRAINING, AgentStatus.DISABLED)
        """No new work for it: drained or disabled by an operator, or draining on its own."""
        self.known: set[UUID] = {item.instance_id for item in data.running}
        self.cancelled: set[UUID] = set()
        """Attempts this session already told the agent to cancel (sent once per connection)."""
        self.credits = 0
        self.bad_frames = 0
        self._dispatches: dict[str, UUID] = {}
        self._queue: asyncio.Queue[_Frame | _Close] = asyncio.Queue()
        self._closing: _Close | None = None
        self.aborted = asyncio.Event()
        """Set when the connection is given up without a close handshake (see ``abort``)."""
        self.last_seen = asyncio.get_running_loop().time()
        """Loop time of the last frame received from the agent (the gateway's watchdog reads it)."""

    def __repr__(self) -> str:
        return f"<AgentSession {self.agent_id} credits={self.credits}>"

    # -- state ------------------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """True until a close was requested."""
        return self._closing is None

    @property
    def awaiting_ack(self) -> int:
        """Dispatches sent and not acked yet."""
        return len(self._dispatches)

    @property
    def free(self) -> int:
        """Dispatches the agent can take now: its credits, within what it may hold."""
        return min(self.credits, self.max_held - len(self.held))

    def capacity_view(self) -> AgentCapacity | None:
        """What the dispatcher may give this agent now; None when it takes nothing."""
        free = self.free
        if not self.open or self.draining or free <= 0 or not self.commands:
            return None
        return AgentCapacity(
            agent_id=self.agent_id,
            labels=dict(self.labels),
            commands=list(self.commands),
            free_slots=free,
            load=max(self.capacity - free, 0),
        )

    # -- frames out -------------------------------------------------------------------------------------

    def send(self, frame: ServerMessage) -> None:
        """Queue ``frame`` for the writer; SessionClosed once the session is closing."""
        self._put(_Frame(encode(frame).decode("utf-8"), None))

    def push(self, dispatch: Dispatch) -> None:
        """Queue the ``ScheduledTask`` of ``dispatch``, spending one credit; SessionClosed when closing."""
        task, instance = dispatch.task, dispatch.instance
        config = task.config
        if config.secret_env is not msgspec.UNSET:
            # The agent needs the values, not the secret names; left out, older agents accept the dispatch.
            config = msgspec.structs.replace(config, secret_env=msgspec.UNSET)
        frame = ScheduledTask(
            data=ScheduledTaskData(
                instance_id=instance.id,
                task_id=task.id,
                job_id=task.job_id,
                attempt=instance.attempt,
                scheduled_at=task.scheduled_at,
                fire_at=dispatch.fire_at,  # when due, or now for overdue work (retries, backlog)
                config=config,
                parameters=task.parameters,
            )
        )
        self._put(_Frame(encode(frame).decode("utf-8"), instance.id))
        self._dispatches[frame.id] = instance.id
        self.known.add(instance.id)
        self.held.add(instance.id)
        self.credits -= 1

    def command(self, data: AgentCommandData) -> None:
        """Queue an ``AgentCommand``; SessionClosed when closing."""
        self.send(AgentCommand(data=data))
        if data.command in (AgentCommandKind.CANCEL, AgentCommandKind.KILL) and data.instance_id is not None:
            self.cancelled.add(data.instance_id)

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued are written (idempotent: the first reason wins)."""
        if self._closing is not None:
            return
        self._closing = _Close(code, reason[:120])  # a close reason must fit in one control frame
        self._queue.put_nowait(self._closing)

    def abort(self) -> None:
        """Give the connection up without a close handshake: the agent stopped reading or went silent."""
        if self._closing is None:
            self._closing = _Close(1006, "abandoned")
        self.aborted.set()

    def _put(self, item: _Frame) -> None:
        if self._closing is not None:
            raise SessionClosed(self.agent_id)
        if self._queue.qsize() >= MAX_QUEUED_FRAMES:
            logger.warning(
                "agent %s does not read its frames; dropping its connection",
                self.agent_id,
                extra={"agent_id": self.agent_id},
            )
            self.abort()
            raise SessionClosed(self.agent_id)
        self._queue.put_nowait(item)

    # -- frames in --------------------------------------------------------------------------------------

    def on_acquire(self, free_slots: int) -> None:
        """The agent's credit announcement (see the module docstring)."""
        self.credits = max(free_slots - len(self._dispatches), 0)

    def on_ack(self, data: AckData) -> UUID | None:
        """An ack of one of our frames; the attempt to hand back when it refused a dispatch."""
        instance_id = self._dispatches.pop(data.ack_id, None)
        if instance_id is not None and not data.ok:
            logger.info(
                "agent %s refused dispatch of %s: %s",
                self.agent_id,
                instance_id,
                data.error,
                extra={"agent_id": self.agent_id, "instance_id": str(instance_id)},
            )
            self.known.discard(instance_id)
            self.held.discard(instance_id)
            return instance_id
        return None

    def on_ended(self, instance_id: UUID) -> None:
        """The agent reported the attempt ended: it no longer holds it."""
        self.held.discard(instance_id)

    def on_error(self, data: ErrorData) -> UUID | None:
        """The agent could not read one of our frames; the attempt to hand back when it was a dispatch."""
        if data.ref_id is None:
            return None
        return self.on_ack(AckData(ack_id=data.ref_id, ok=False, error=data.message))

    # -- the writer -------------------------------------------------------------------------------------

    async def write_loop(self) -> None:
        """Write queued frames in order until a close is written (return) or the connection fails (raise)."""
        while True:
            item = await self._queue.get()
            if isinstance(item, _Close):
                await self.websocket.close(item.code, item.reason)
                return
            await self.websocket.send_text(item.text)
            if item.instance_id is not None:
                logger.debug(
                    "dispatched %s to %s",
                    item.instance_id,
                    self.agent_id,
                    extra={"agent_id": self.agent_id, "instance_id": str(item.instance_id)},
                )

    def unsent_dispatches(self) -> list[UUID]:
        """After the writer ended: dispatches still queued, which the agent certainly never received."""
        if self._closing is None:
            self._closing = _Close(1000, "session ended")
        unsent: list[UUID] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Frame) and item.instance_id is not None:
                unsent.append(item.instance_id)
        return unsent
