"""The broker: everything between this server and its agents, built and wired in one place.

`Broker` owns the session registry, the admission of registrations, the dispatcher, the report batcher,
liveness, the command router and the log watch of the live tails, and subscribes to the application's NOTIFY
listener (work and agent-command channels). The application container builds one when it starts serving (with
``is_leader``, its view of the leader lease, which decides where the reaper runs) and registers `Broker.loops`
with its background loops; the agents' WebSocket calls `register`/`unregister` around each connection.

Loops, in start order (they stop in reverse): ``broker-reports`` (the batcher), ``broker-dispatcher``,
``broker-heartbeats`` (stores heartbeats in batches), ``broker-silence`` (drops silent connections),
``broker-liveness`` (the leader's reaper).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from uuid import UUID

import msgspec
from starlette.websockets import WebSocket

from hetuflow_core.enums import AgentCommandKind, AgentStatus, TaskStatus
from hetuflow_core.ids import now_ms
from hetuflow_core.protocol import (
    AgentCommandData,
    AgentRegisterData,
    AgentRegisterResponse,
    RegisterResponseData,
)
from hetuflow_server.broker.admission import RegistrationGate
from hetuflow_server.broker.batcher import ReportBatcher
from hetuflow_server.broker.commands import CommandRouter
from hetuflow_server.broker.dispatcher import Dispatcher
from hetuflow_server.broker.liveness import Liveness
from hetuflow_server.broker.logwatch import LogWatch
from hetuflow_server.broker.registry import SessionRegistry
from hetuflow_server.broker.session import AgentSession
from hetuflow_server.config import SchedulerSection
from hetuflow_server.errors import HetuflowError
from hetuflow_server.infra import notify
from hetuflow_server.loops import LoopFactory, every
from hetuflow_server.service import ReportResult, Services

__all__ = ["Broker", "BrokerSettings"]

logger = logging.getLogger(__name__)


class BrokerSettings(msgspec.Struct, kw_only=True, frozen=True):
    """The timings the broker works with (from the ``scheduler`` section of the configuration)."""

    heartbeat_interval_secs: float = 5.0
    agent_timeout_secs: float = 15.0
    dispatch_lookahead_secs: float = 5.0
    safety_poll_secs: float = 30.0

    @classmethod
    def from_config(cls, scheduler: SchedulerSection) -> BrokerSettings:
        """The settings of a server configured with ``scheduler``."""
        return cls(
            heartbeat_interval_secs=scheduler.heartbeat_interval_secs,
            agent_timeout_secs=scheduler.agent_timeout_secs,
            dispatch_lookahead_secs=scheduler.dispatch_lookahead_secs,
            safety_poll_secs=scheduler.safety_poll_secs,
        )


class Broker:
    """This server's side of the agent pipeline (see the module docstring)."""

    def __init__(
        self,
        services: Services,
        *,
        server_id: UUID,
        listener: notify.Listener,
        settings: BrokerSettings,
        draining: asyncio.Event,
        is_leader: Callable[[], bool],
    ) -> None:
        self.services = services
        self.server_id = server_id
        self.settings = settings
        self.draining = draining
        """Set when the server shuts down: agent connections close (1001) and live tails end."""
        self.registry = SessionRegistry()
        self.registrations = RegistrationGate()
        """Registrations in progress, bounded: the gateway refuses more (see ``broker.admission``)."""
        self.log_watch = LogWatch()
        self.dispatcher = Dispatcher(
            services.dispatch,
            self.registry,
            lookahead_secs=settings.dispatch_lookahead_secs,
            safety_poll_secs=settings.safety_poll_secs,
        )
        self.reports = ReportBatcher(services.dispatch, on_stored=self._on_stored)
        self.liveness = Liveness(
            services,
            self.dispatcher,
            server_id=server_id,
            heartbeat_interval_secs=settings.heartbeat_interval_secs,
            agent_timeout_secs=settings.agent_timeout_secs,
            is_leader=is_leader,
        )
        self.commands = CommandRouter(self.registry, self.dispatcher)
        listener.add_connect_hook(self.commands.on_listener_connect)
        listener.subscribe(notify.WORK_CHANNEL, self.commands.on_work)
        listener.subscribe(notify.AGENT_CMD_CHANNEL, self.commands.on_notice)

    def loops(self) -> list[tuple[str, LoopFactory]]:
        """The broker's background loops as ``(name, factory)``, in start order."""
        liveness = self.liveness
        return [
            ("broker-reports", self.reports.run),
            ("broker-dispatcher", self.dispatcher.run),
            ("broker-heartbeats", every(liveness.flush_secs, liveness.flush, name="broker-heartbeats")),
            ("broker-silence", liveness.watch_silence),
            ("broker-liveness", every(liveness.tick_secs, liveness.reap, name="broker-liveness")),
        ]

    # -- agent connections ------------------------------------------------------------------------------

    async def register(self, websocket: WebSocket, data: AgentRegisterData) -> AgentSession:
        """Accept the registration ``data`` of an authenticated agent: upsert it and reconcile its state sync
        (one transaction), answer it and make its session current. Raises HetuflowError (database) before
        answering anything."""
        previous = self.registry.get(data.agent_id)
        if previous is not None:
            # Its old connection is dead or dying; it must not take new work while this one registers.
            previous.draining = True
        client = websocket.client
        agent, reconciliation = await self.services.agents.connect(
            data, server_id=self.server_id, address=client.host if client is not None else None
        )
        # Finished attempts whose report follows right after registration are neither lost nor killed.
        finished = {item.instance_id for item in data.running if item.status.is_final}
        kill = [instance_id for instance_id in reconciliation.kill if instance_id not in finished]
        session = AgentSession(
            websocket, data, status=agent.status, holding=reconciliation.keep, labels=agent.labels
        )
        session.send(
            AgentRegisterResponse(
                data=RegisterResponseData(
                    accepted=True,
                    server_id=self.server_id,
                    server_time_ms=now_ms(),
                    heartbeat_interval_secs=self.settings.heartbeat_interval_secs,
                    agent_timeout_secs=self.settings.agent_timeout_secs,
                    keep=reconciliation.keep,
                    kill=kill,
                )
            )
        )
        if agent.labels != data.labels:
            # An operator locked other labels: the agent learns those (and declares them next time).
            logger.info(
                "agent %s declared labels %s; it keeps the locked %s",
                data.agent_id,
                data.labels,
                agent.labels,
                extra={"agent_id": data.agent_id},
            )
            session.command(AgentCommandData(command=AgentCommandKind.UPDATE_LABELS, labels=agent.labels))
        if agent.status in (AgentStatus.DRAINING, AgentStatus.DISABLED):
            session.command(
                AgentCommandData(command=AgentCommandKind.DRAIN, reason=f"agent is {agent.status}")
            )
        self.liveness.cancel(session, reconciliation.ended, "the task ended while its agent was away")
        self.registry.add(session)
        self.liveness.watch(session)
        logger.info(
            "agent %s registered (%d kept, %d killed, %d lost)",
            data.agent_id,
            len(reconciliation.keep),
            len(kill),
            len(reconciliation.lost),
            extra={"agent_id": data.agent_id},
        )
        # No dispatcher wake-up here: the session has no credits until the agent's first task.acquire, which
        # wakes it (in a reconnect storm, a round per registration would scan every session for nothing).
        return session

    async def unregister(self, session: AgentSession) -> None:
        """The connection of ``session`` ended: forget it, hand back what it never sent, and mark the agent
        offline unless a newer connection took over."""
        current = self.registry.remove(session)
        await self.liveness.forget(session)
        unsent = session.unsent_dispatches()
        if unsent:
            self.dispatcher.hand_back(unsent, "the agent's connection closed before the dispatch was sent")
        if not current:
            return
        try:
            await self.services.agents.disconnect(session.agent_id, server_id=self.server_id)
        except HetuflowError as exc:
            logger.warning(
                "could not mark agent %s offline: %s",
                session.agent_id,
                exc.detail,
                extra={"agent_id": session.agent_id},
            )
        logger.info("agent %s disconnected", session.agent_id, extra={"agent_id": session.agent_id})

    def _on_stored(self, instance_ids: set[UUID], results: Sequence[ReportResult]) -> None:
        self.log_watch.notify(instance_ids)
        if any(
            result.task is not None and result.task.status is TaskStatus.WAITING_RETRY for result in results
        ):
            self.dispatcher.wake()  # a retry backoff began: the dispatcher's next wake-up time changed
