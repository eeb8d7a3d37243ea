"""AgentService and ServerService: the fleet as the API and the gateway see it.

Operator actions that the agent itself must hear about (new labels, drain, shutdown) are published on
``AGENT_CMD_CHANNEL`` in the same transaction as the change; the server holding the agent's connection
forwards them. Registration, heartbeats and disconnects are the gateway's side of the same rows: a
connection's registration with its state sync is one transaction, and heartbeats are stored in batches.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from hetuflow_core.agent import Agent, AgentMetrics, AgentUpdate, Server
from hetuflow_core.enums import AgentCommandKind, AgentStatus
from hetuflow_core.protocol import AgentRegisterData
from hetuflow_server.errors import Conflict, IllegalTransition
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service import _reconcile
from hetuflow_server.service._reconcile import Reconciliation
from hetuflow_server.service._validation import revalidate
from hetuflow_server.service.dispatch import DispatchObserver
from hetuflow_server.service.reports import ReportApplier

__all__ = ["AgentService", "ServerService"]


async def _command(conn: db.Connection, notice: notify.AgentCommandNotice) -> None:
    await notify.notify(conn, notify.AGENT_CMD_CHANNEL, notify.encode_agent_command(notice))


async def _upsert(
    conn: db.Connection, data: AgentRegisterData, *, server_id: UUID, address: str | None
) -> Agent:
    return await bmc.AgentBmc.register(
        conn,
        agent_id=data.agent_id,
        name=data.name,
        address=address,
        labels=data.labels,
        capabilities=data.capabilities,
        server_id=server_id,
    )


class AgentService:
    """Agents: list, inspect, relabel, drain, shut down, disable/enable, delete; register and heartbeat
    (gateway).

    ``observer`` (the server's metrics) hears about the attempts a registration's state sync declared lost.
    """

    def __init__(self, db: ModelManager, *, observer: DispatchObserver | None = None) -> None:
        self._db = db
        self._reports = ReportApplier(random.random)
        self._observer = observer

    async def list(self) -> Sequence[Agent]:
        """Every agent, by id."""
        async with self._db.transaction() as conn:
            return await bmc.AgentBmc.select_all(conn)

    async def get(self, agent_id: str) -> Agent:
        """The agent, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.AgentBmc.get(conn, agent_id)

    async def update_labels(self, agent_id: str, update: AgentUpdate) -> Agent:
        """Replace the agent's routing labels (locked unless ``update.locked`` is false); tell the agent."""
        update = revalidate(update, AgentUpdate)
        async with self._db.transaction() as conn:
            agent = await bmc.AgentBmc.set_labels(conn, agent_id, update.labels, locked=update.locked)
            await _command(
                conn,
                notify.AgentCommandNotice(
                    agent_id=agent_id, command=AgentCommandKind.UPDATE_LABELS, labels=update.labels
                ),
            )
            await notify.work_added(conn)  # new labels may match waiting tasks
        return agent

    async def drain(self, agent_id: str) -> Agent:
        """online → draining: no new work, running tasks finish; the agent is told. No-op when draining."""
        async with self._db.transaction() as conn:
            current = await bmc.AgentBmc.get(conn, agent_id)
            if current.status is AgentStatus.DRAINING:
                return current
            agent = await bmc.AgentBmc.set_status(
                conn, agent_id, AgentStatus.DRAINING, allowed=[AgentStatus.ONLINE]
            )
            if agent is None:
                raise IllegalTransition(
                    f"agent {agent_id} is {current.status}; only an online agent can drain"
                )
            await _command(conn, notify.AgentCommandNotice(agent_id=agent_id, command=AgentCommandKind.DRAIN))
        return agent

    async def shutdown(self, agent_id: str) -> Agent:
        """Tell a connected agent to drain and exit; online → draining so it gets no new work meanwhile.

        IllegalTransition when it is not connected (offline): nobody would hear the command.
        """
        async with self._db.transaction() as conn:
            agent = await bmc.AgentBmc.get(conn, agent_id)
            if agent.status is AgentStatus.OFFLINE or agent.server_id is None:
                raise IllegalTransition(
                    f"agent {agent_id} is not connected; only a connected agent can shut down"
                )
            if agent.status is AgentStatus.ONLINE:
                drained = await bmc.AgentBmc.set_status(
                    conn, agent_id, AgentStatus.DRAINING, allowed=[AgentStatus.ONLINE]
                )
                if drained is None:  # changed under us between the read and the update
                    raise IllegalTransition(f"agent {agent_id} changed state concurrently; try again")
                agent = drained
            await _command(
                conn, notify.AgentCommandNotice(agent_id=agent_id, command=AgentCommandKind.SHUTDOWN)
            )
        return agent

    async def disable(self, agent_id: str) -> Agent:
        """Any state → disabled: no new work until enabled; running tasks finish. No-op when disabled."""
        async with self._db.transaction() as conn:
            current = await bmc.AgentBmc.get(conn, agent_id)
            if current.status is AgentStatus.DISABLED:
                return current
            agent = await bmc.AgentBmc.set_status(
                conn,
                agent_id,
                AgentStatus.DISABLED,
                allowed=[AgentStatus.ONLINE, AgentStatus.OFFLINE, AgentStatus.DRAINING],
            )
            if agent is None:  # changed under us between the read and the update
                raise IllegalTransition(f"agent {agent_id} changed state concurrently; try again")
        return agent

    async def enable(self, agent_id: str) -> Agent:
        """disabled → online (if connected) or offline. No-op for an agent that is not disabled."""
        async with self._db.transaction() as conn:
            agent = await bmc.AgentBmc.enable(conn, agent_id)
            if agent is None:
                return await bmc.AgentBmc.get(conn, agent_id)
            await notify.work_added(conn)
        return agent

    async def delete(self, agent_id: str) -> None:
        """Delete an agent that is not connected (offline, or disabled and gone); Conflict while connected."""
        async with self._db.transaction() as conn:
            agent = await bmc.AgentBmc.get(conn, agent_id)
            if not await bmc.AgentBmc.delete(conn, agent_id):
                raise Conflict(
                    f"agent {agent_id} is {agent.status} and connected; only an offline agent is deleted"
                )

    # -- gateway side --------------------------------------------------------------------------------------

    async def register(self, data: AgentRegisterData, *, server_id: UUID, address: str | None) -> Agent:
        """Create or refresh the agent as connected to ``server_id``; wakes dispatchers (new capacity). The
        labels of the answer are the ones that route work to it (an operator's, when locked)."""
        async with self._db.transaction() as conn:
            agent = await _upsert(conn, data, server_id=server_id, address=address)
            await notify.work_added(conn)
        return agent

    async def connect(
        self, data: AgentRegisterData, *, server_id: UUID, address: str | None
    ) -> tuple[Agent, Reconciliation]:
        """A connection's registration in one transaction: `register`, then the state sync of what ``data``
        says the agent runs (``DispatchService.reconcile``). Cheap on purpose: after a server restart the
        whole fleet registers at once."""
        async with self._db.transaction() as conn:
            agent = await _upsert(conn, data, server_id=server_id, address=address)
            running = [item.instance_id for item in data.running]
            reconciliation, results = await _reconcile.reconcile(conn, self._reports, data.agent_id, running)
            await notify.work_added(conn)
        if self._observer is not None:
            self._observer.reports_applied(results, by_agent=False)
        return agent, reconciliation

    async def heartbeat(self, agent_id: str, *, server_id: UUID, metrics: AgentMetrics | None) -> Agent:
        """Record a heartbeat received by ``server_id``."""
        async with self._db.transaction() as conn:
            return await bmc.AgentBmc.heartbeat(conn, agent_id, server_id=server_id, metrics=metrics)

    async def heartbeats(
        self, beats: Sequence[tuple[str, AgentMetrics | None]], *, server_id: UUID
    ) -> dict[str, bmc.AgentBeat]:
        """Record many heartbeats ``(agent id, metrics)`` received by ``server_id`` in one statement; each
        agent's status and live attempts (with their task's status), by agent id."""
        async with self._db.transaction() as conn:
            return await bmc.AgentBmc.heartbeat_many(conn, beats, server_id=server_id)

    async def disconnect(self, agent_id: str, *, server_id: UUID) -> Agent | None:
        """The connection ``server_id`` held closed; None when another server holds the agent by now."""
        async with self._db.transaction() as conn:
            return await bmc.AgentBmc.disconnect(conn, agent_id, server_id=server_id)

    async def first_seen(self, agent_id: str, msg_ids: Sequence[str]) -> set[str]:
        """Record frame ids as applied; returns the ids never seen before (apply only those)."""
        async with self._db.transaction() as conn:
            return await bmc.AgentMsgBmc.record(conn, agent_id, msg_ids)


class ServerService:
    """Servers sharing the database, and the leases of singleton work."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def list(self) -> Sequence[Server]:
        """Every server, oldest first, with ``is_leader``."""
        async with self._db.transaction() as conn:
            return await bmc.ServerBmc.select_all(conn)

    async def register(self, server_id: UUID, *, name: str, address: str | None) -> Server:
        """Create or reactivate this server's row (at startup)."""
        async with self._db.transaction() as conn:
            return await bmc.ServerBmc.register(conn, server_id, name=name, address=address)

    async def heartbeat(self, server_id: UUID) -> None:
        """Mark this server alive now."""
        async with self._db.transaction() as conn:
            await bmc.ServerBmc.heartbeat(conn, server_id)

    async def mark_up(self, *, gap_secs: float) -> datetime:
        """Record that the scheduler is up now (with each heartbeat); a silence of every server longer than
        ``gap_secs`` restarts its uptime, and the misfire policy then judges the slots that came due before.
        Returns the start of the uptime."""
        async with self._db.transaction() as conn:
            return await bmc.UptimeBmc.mark_up(conn, gap_secs=gap_secs)

    async def deactivate(self, server_id: UUID) -> None:
        """Mark this server inactive (clean shutdown)."""
        async with self._db.transaction() as conn:
            await bmc.ServerBmc.deactivate(conn, server_id)

    async def acquire_lease(self, name: str, *, holder: UUID, ttl_secs: float) -> bmc.Lease | None:
        """Take or renew lease ``name``; None while someone else holds it."""
        async with self._db.transaction() as conn:
            return await bmc.LeaseBmc.acquire(conn, name, holder=holder, ttl_secs=ttl_secs)

    async def release_lease(self, name: str, *, holder: UUID) -> bool:
        """Give lease ``name`` up now if ``holder`` holds it."""
        async with self._db.transaction() as conn:
            return await bmc.LeaseBmc.release(conn, name, holder=holder)
