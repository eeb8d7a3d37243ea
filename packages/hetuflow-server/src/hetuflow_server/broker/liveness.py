"""Liveness: heartbeats, the state sync they carry, and the reaper of silent agents.

Each heartbeat refreshes the agent's row and compares its live attempts with what its connection knows
(`AgentSession.known`): an attempt dispatched over a connection the agent had already left is handed back
(the agent cannot hold it); one whose task already ended is cancelled on the agent; one the agent runs that is
no longer live for it (declared lost while its heartbeats could not be stored) is cancelled too, so a stale
process never runs beside its retry. Each cancel is sent once per connection. The reaper runs on the leader
only: agents silent for ``agent_timeout_secs`` go offline and their live attempts become ``lost``. See
docs/architecture.md (Liveness).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Final
from uuid import UUID

from hetuflow_core.agent import AgentMetrics
from hetuflow_core.enums import AgentCommandKind, AgentStatus
from hetuflow_core.protocol import AgentCommandData
from hetuflow_server.broker.dispatcher import Dispatcher
from hetuflow_server.broker.session import AgentSession, SessionClosed
from hetuflow_server.errors import HetuflowError
from hetuflow_server.service import Services

__all__ = ["Liveness"]

logger = logging.getLogger(__name__)

FRAME_ID_RETENTION: Final = timedelta(days=1)
"""How long the ids of applied agent frames are remembered (the retention pass forgets older ones; a resend
older than that is still harmless: every report and chunk is idempotent by state or by sequence number)."""


class Liveness:
    """Heartbeat handling and the leader's reaper (see the module docstring)."""

    def __init__(
        self,
        services: Services,
        dispatcher: Dispatcher,
        *,
        server_id: UUID,
        agent_timeout_secs: float,
        is_leader: Callable[[], bool],
    ) -> None:
        self._services = services
        self._dispatcher = dispatcher
        self._server_id = server_id
        self._agent_timeout_secs = agent_timeout_secs
        self._is_leader = is_leader

    @property
    def tick_secs(self) -> float:
        """How often the reaper looks: four times per agent timeout."""
        return self._agent_timeout_secs / 4

    # -- heartbeats -------------------------------------------------------------------------------------

    async def heartbeat(
        self, session: AgentSession, metrics: AgentMetrics, running: Sequence[UUID] = ()
    ) -> None:
        """Record a heartbeat of ``session``'s agent and run the state sync against the attempts it says it
        runs (errors are logged)."""
        try:
            agent = await self._services.agents.heartbeat(
                session.agent_id, server_id=self._server_id, metrics=metrics
            )
            # Disabling an agent sends it nothing: its session learns it here, within a heartbeat.
            session.draining = agent.status in (AgentStatus.DRAINING, AgentStatus.DISABLED)
            await self.sync(session, running)
        except HetuflowError as exc:
            logger.warning(
                "heartbeat of agent %s not recorded: %s",
                session.agent_id,
                exc.detail,
                extra={"agent_id": session.agent_id},
            )

    async def sync(self, session: AgentSession, running: Sequence[UUID] = ()) -> None:
        """Compare the agent's live attempts with what its connection knows (see the module docstring)."""
        # Under the dispatcher's lock no round has attempts created but not yet in ``known``, and none is
        # added to ``known`` between the read and the pruning below.
        async with self._dispatcher.lock:
            live = await self._services.dispatch.live_attempts(session.agent_id)
            foreign = [item.instance_id for item in live if item.instance_id not in session.known]
            session.known.intersection_update(item.instance_id for item in live)
        ended = [
            item.instance_id
            for item in live
            if item.task_status.is_final
            and item.instance_id in session.known
            and item.instance_id not in session.cancelled
        ]
        if foreign:
            logger.warning(
                "agent %s cannot hold %d attempts dispatched over a connection it had left: handed back",
                session.agent_id,
                len(foreign),
                extra={"agent_id": session.agent_id},
            )
            self._dispatcher.hand_back(foreign, "dispatched over a connection the agent had already left")
        self.cancel(session, ended, "the task ended while its agent could not be told")
        live_ids = {item.instance_id for item in live}
        stale = [i for i in running if i not in live_ids and i not in session.cancelled]
        if stale:
            logger.warning(
                "agent %s runs %d attempts that are no longer live for it: cancelling them",
                session.agent_id,
                len(stale),
                extra={"agent_id": session.agent_id},
            )
        self.cancel(session, stale, "the attempt is no longer current (declared lost while unreachable)")

    def cancel(self, session: AgentSession, instance_ids: Sequence[UUID], reason: str) -> None:
        """Tell the agent to cancel ``instance_ids`` (closed sessions are skipped: registration re-syncs)."""
        for instance_id in instance_ids:
            try:
                session.command(
                    AgentCommandData(command=AgentCommandKind.CANCEL, instance_id=instance_id, reason=reason)
                )
            except SessionClosed:
                return

    # -- the reaper -------------------------------------------------------------------------------------

    async def reap(self) -> None:
        """One reaper tick: on the leader, reap silent agents (idempotent, so a second reaper during a
        leadership change does no harm)."""
        if not self._is_leader():
            return
        offline = await self._services.dispatch.reap_offline_agents(timeout_secs=self._agent_timeout_secs)
        if offline:
            logger.warning(
                "agents silent for %gs are offline: %s", self._agent_timeout_secs, ", ".join(offline)
            )
            self._dispatcher.wake()
