"""Applying what a server sends: dispatches, commands, acks, clock samples and error reports.

Dispatches and commands are applied first and acknowledged afterwards, so an ack always means "done".
The server resends what it has not seen acked, so receiving is idempotent: the answer to a message id
is remembered and replayed for a repeat, and an instance id already taken is never started a second
time, whatever message carries it. Both memories are bounded (the oldest entries go first); the server
only resends recent frames, so that is enough.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Final, Generic, Protocol, TypeVar
from uuid import UUID

from hetuflow_agent.connection.msgid import next_message_id
from hetuflow_agent.connection.outbox import Outbox
from hetuflow_agent.connection.runner import TaskRunner
from hetuflow_agent.errors import AgentError
from hetuflow_agent.scheduler.clock import Clock
from hetuflow_core.enums import AgentCommandKind
from hetuflow_core.protocol import (
    Ack,
    AckData,
    AgentCommand,
    AgentRegisterResponse,
    Error,
    HeartbeatResponse,
    ScheduledTask,
    ScheduledTaskData,
)

__all__ = ["Control", "InboundHandler"]

logger = logging.getLogger(__name__)

_REMEMBERED_IDS: Final = 8192
"""Message ids and instance ids remembered for de-duplication."""

K = TypeVar("K")
V = TypeVar("V")


class Control(Protocol):
    """The agent-wide switches commands flip (implemented by the session)."""

    @property
    def draining(self) -> bool:
        """True once the agent stopped taking work."""
        ...

    def start_drain(self) -> None:
        """Stop taking new work and tell the server so."""
        ...

    def request_shutdown(self) -> None:
        """Drain, then exit the process."""
        ...

    def set_labels(self, labels: dict[str, str]) -> None:
        """Replace the routing labels (sent again at the next registration)."""
        ...


class _Recent(Generic[K, V]):
    """A bounded mapping that forgets its oldest entries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class InboundHandler:
    """Turns server frames into actions on the runner, the outbox and the clock; returns the reply."""

    def __init__(self, runner: TaskRunner, outbox: Outbox, clock: Clock, control: Control) -> None:
        self._runner = runner
        self._outbox = outbox
        self._clock = clock
        self._control = control
        self._answers: _Recent[str, AckData] = _Recent(_REMEMBERED_IDS)
        self._instances: _Recent[UUID, None] = _Recent(_REMEMBERED_IDS)
        self.duplicates = 0

    async def handle(
        self,
        message: AgentRegisterResponse | HeartbeatResponse | ScheduledTask | AgentCommand | Ack | Error,
        received_ms: int,
    ) -> Ack | None:
        """Apply one decoded server frame; the returned ack (if any) must be sent back."""
        if isinstance(message, Ack):
            self._on_ack(message)
        elif isinstance(message, HeartbeatResponse):
            data = message.data
            self._clock.observe(
                server_time_ms=data.server_time_ms, sent_ms=data.request_ts, received_ms=received_ms
            )
        elif isinstance(message, ScheduledTask | AgentCommand):
            previous = self._answers.get(message.id)
            if previous is not None:
                self.duplicates += 1
                return Ack(
                    data=previous, id=next_message_id()
                )  # a resend: same answer, nothing applied again
            if isinstance(message, ScheduledTask):
                answer = await self._on_dispatch(message)
            else:
                answer = await self._on_command(message)
            self._answers.put(message.id, answer)
            return Ack(data=answer, id=next_message_id())
        elif isinstance(message, Error):
            self._on_error(message)
        else:
            logger.warning("ignoring a registration response outside of registration")
        return None

    def _on_ack(self, message: Ack) -> None:
        data = message.data
        if self._outbox.ack(data.ack_id) and not data.ok:
            # a refusal is final: resending a frame the server rejected would only be rejected again
            logger.warning(
                "server refused frame %s: %s", data.ack_id, data.error, extra={"ack_id": data.ack_id}
            )

    def _on_error(self, message: Error) -> None:
        data = message.data
        logger.warning(
            "server reported %s: %s",
            data.code,
            data.message,
            extra={"ref_id": data.ref_id, "code": data.code},
        )
        if data.ref_id is not None and self._outbox.ack(data.ref_id):
            logger.warning(
                "dropped report %s the server cannot read", data.ref_id, extra={"ref_id": data.ref_id}
            )

    async def _on_dispatch(self, message: ScheduledTask) -> AckData:
        data = message.data
        if data.instance_id in self._instances:
            self.duplicates += 1
            logger.info("instance %s dispatched again; already taken", data.instance_id, extra=_ids(data))
            return AckData(ack_id=message.id)
        if self._control.draining:
            logger.info("refused dispatch of %s: draining", data.instance_id, extra=_ids(data))
            return AckData(ack_id=message.id, ok=False, error="agent is draining")
        try:
            await self._runner.submit(data)
        except AgentError as exc:  # the runner refused it (full, shutting down): the server re-queues it
            logger.warning("refused dispatch of %s: %s", data.instance_id, exc, extra=_ids(data))
            return AckData(ack_id=message.id, ok=False, error=str(exc))
        except Exception as exc:  # a bug must cost this one dispatch, not the connection
            logger.exception("dispatch of %s failed", data.instance_id, extra=_ids(data))
            return AckData(ack_id=message.id, ok=False, error=f"agent error: {type(exc).__name__}: {exc}")
        self._instances.put(data.instance_id, None)
        # Debug, not info: one line per task is most of an agent's log at hundreds of tasks a second
        # and a measurable share of its time; the server records every dispatch anyway.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("took instance %s (fire at %s)", data.instance_id, data.fire_at, extra=_ids(data))
        return AckData(ack_id=message.id)

    async def _on_command(self, message: AgentCommand) -> AckData:
        data = message.data
        logger.info("command %s from the server", data.command, extra={"instance_id": str(data.instance_id)})
        if data.command in (AgentCommandKind.CANCEL, AgentCommandKind.KILL):
            if data.instance_id is None:
                return AckData(ack_id=message.id, ok=False, error=f"{data.command} needs an instance_id")
            if data.command is AgentCommandKind.KILL:
                await self._runner.kill(data.instance_id)
                return AckData(ack_id=message.id)
            found = await self._runner.cancel(data.instance_id, data.reason or "cancelled by the server")
            return AckData(ack_id=message.id, ok=found, error=None if found else "not running on this agent")
        if data.command is AgentCommandKind.DRAIN:
            self._control.start_drain()
        elif data.command is AgentCommandKind.SHUTDOWN:
            self._control.request_shutdown()
        elif data.labels is None:
            return AckData(ack_id=message.id, ok=False, error="update_labels needs labels")
        else:
            self._control.set_labels(dict(data.labels))
        return AckData(ack_id=message.id)


def _ids(data: ScheduledTaskData) -> dict[str, str]:
    """The log ``extra`` of a dispatch."""
    return {"instance_id": str(data.instance_id), "task_id": str(data.task_id)}
