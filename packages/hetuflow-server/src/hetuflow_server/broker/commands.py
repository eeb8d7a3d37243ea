"""Commands for agents, routed to the server that holds each agent's connection.

Whoever orders something of an agent (cancel a task, drain, relabel) publishes an ``AgentCommandNotice`` on
``AGENT_CMD_CHANNEL`` in the transaction of the change (``TaskService.cancel``, ``AgentService``). Every
server receives it; the one whose registry holds the agent turns it into an ``AgentCommand`` frame, the
others ignore it. The local case takes the same path on purpose: one route to test, and a command is only
ever sent for a change that committed. A notice missed while the LISTEN connection was down is made good by
the state sync of the agent's next heartbeat (an attempt whose task ended is cancelled there).
"""

from __future__ import annotations

import contextlib
import logging

from hetuflow_core.enums import AgentCommandKind
from hetuflow_core.protocol import AgentCommandData
from hetuflow_server.broker.dispatcher import Dispatcher
from hetuflow_server.broker.registry import SessionRegistry
from hetuflow_server.broker.session import SessionClosed
from hetuflow_server.infra import notify

__all__ = ["CommandRouter"]

logger = logging.getLogger(__name__)


class CommandRouter:
    """Turns agent-command notifications into frames for the agents connected here."""

    def __init__(self, registry: SessionRegistry, dispatcher: Dispatcher) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self.forwarded = 0

    async def on_notice(self, payload: str) -> None:
        """Listener callback of ``AGENT_CMD_CHANNEL``."""
        notice = notify.decode_agent_command(payload)
        if notice is None:
            return
        session = self._registry.get(notice.agent_id)
        if session is None:
            return  # another server holds it, or nobody: its next registration re-syncs
        if notice.command is AgentCommandKind.UPDATE_LABELS and notice.labels is not None:
            session.labels = dict(notice.labels)
            self._dispatcher.wake()  # waiting tasks may match the new labels
        elif notice.command in (AgentCommandKind.DRAIN, AgentCommandKind.SHUTDOWN):
            session.draining = True
        data = AgentCommandData(
            command=notice.command,
            instance_id=notice.instance_id,
            labels=notice.labels,
            reason=notice.reason,
        )
        with contextlib.suppress(SessionClosed):  # closing: the agent re-syncs when it registers again
            session.command(data)
            self.forwarded += 1
            logger.info(
                "sent %s to agent %s",
                notice.command,
                notice.agent_id,
                extra={"agent_id": notice.agent_id, "instance_id": str(notice.instance_id)},
            )

    async def on_work(self, payload: str) -> None:
        """Listener callback of ``WORK_CHANNEL``: due work or capacity changed somewhere."""
        self._dispatcher.wake()

    async def on_listener_connect(self) -> None:
        """After every (re)connection of the LISTEN connection: catch up with what may have been missed."""
        self._dispatcher.wake()
