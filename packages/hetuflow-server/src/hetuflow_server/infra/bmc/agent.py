"""AgentBmc and AgentMsgBmc: statements on ``sched_agent`` and on the ids of frames already applied."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.agent import Agent, AgentCapabilities, AgentMetrics
from hetuflow_core.enums import AgentStatus, TaskStatus
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import jsonb, jsonb_or_none, many, one, required
from hetuflow_server.infra.bmc.instance import LiveAttempt
from hetuflow_server.infra.sql import query

__all__ = ["AgentBeat", "AgentBmc", "AgentMsgBmc"]

_REGISTER = query("register_agent")
_HEARTBEAT = query("heartbeat_agent")
_HEARTBEAT_MANY = query("heartbeat_agents")
_GET = query("get_agent")
_LIST = query("list_agents")
_SET_LABELS = query("set_agent_labels")
_SET_STATUS = query("set_agent_status")
_ENABLE = query("enable_agent")
_DISCONNECT = query("disconnect_agent")
_MARK_STALE = query("mark_stale_agents_offline")
_DELETE = query("delete_agent")
_MATCHING_ONLINE = query("list_matching_online_agents")
_RECORD_MSGS = query("record_agent_msgs")
_PURGE_MSGS = query("purge_agent_msgs")


_metrics_encoder = msgspec.json.Encoder()


class AgentBeat(msgspec.Struct, kw_only=True):
    """One agent of a batch of heartbeats: its status now, and its live attempts for the state sync."""

    status: AgentStatus
    live: list[LiveAttempt] = msgspec.field(default_factory=list)


class AgentBmc:
    """Agents: worker processes and where they are connected."""

    @staticmethod
    async def register(
        conn: db.Connection,
        *,
        agent_id: str,
        name: str,
        address: str | None,
        labels: dict[str, str],
        capabilities: AgentCapabilities,
        server_id: UUID,
    ) -> Agent:
        """Create or refresh the agent as connected to ``server_id`` (operator modes and locked labels
        survive)."""
        params = {
            "id": agent_id,
            "name": name,
            "address": address,
            "labels": jsonb(labels),
            "capabilities": jsonb(capabilities),
            "server_id": server_id,
        }
        return required(await db.fetch_one(conn, _REGISTER, params), Agent, "agent", agent_id)

    @staticmethod
    async def heartbeat(
        conn: db.Connection, agent_id: str, *, server_id: UUID, metrics: AgentMetrics | None
    ) -> Agent:
        """Record a heartbeat received by ``server_id``."""
        params = {"id": agent_id, "server_id": server_id, "metrics": jsonb_or_none(metrics)}
        return required(await db.fetch_one(conn, _HEARTBEAT, params), Agent, "agent", agent_id)

    @staticmethod
    async def heartbeat_many(
        conn: db.Connection, beats: Sequence[tuple[str, AgentMetrics | None]], *, server_id: UUID
    ) -> dict[str, AgentBeat]:
        """Record the heartbeats ``(agent id, metrics)`` received by ``server_id`` in one statement; each
        agent's status and live attempts by agent id (an agent that no longer exists is absent)."""
        if not beats:
            return {}
        params = {
            "ids": [agent_id for agent_id, _ in beats],
            # Encoded here in one call each; the statement casts them to jsonb.
            "metrics": [None if m is None else _metrics_encoder.encode(m).decode() for _, m in beats],
            "server_id": server_id,
        }
        found: dict[str, AgentBeat] = {}
        for row in await db.fetch_all(conn, _HEARTBEAT_MANY, params):
            beat = found.get(row["id"])
            if beat is None:
                beat = found[row["id"]] = AgentBeat(status=AgentStatus(row["status"]))
            if row["instance_id"] is not None:
                beat.live.append(
                    LiveAttempt(
                        instance_id=row["instance_id"],
                        task_id=row["task_id"],
                        task_status=TaskStatus(row["task_status"]),
                    )
                )
        return found

    @staticmethod
    async def get(conn: db.Connection, agent_id: str) -> Agent:
        """The agent, or NotFound."""
        return required(await db.fetch_one(conn, _GET, {"id": agent_id}), Agent, "agent", agent_id)

    @staticmethod
    async def select_all(conn: db.Connection) -> list[Agent]:
        """Every agent, by id."""
        return many(await db.fetch_all(conn, _LIST), Agent)

    @staticmethod
    async def set_labels(
        conn: db.Connection, agent_id: str, labels: dict[str, str], *, locked: bool = True
    ) -> Agent:
        """Replace the routing labels; ``locked``: they stay over what the agent declares at registration."""
        params = {"id": agent_id, "labels": jsonb(labels), "locked": locked}
        row = await db.fetch_one(conn, _SET_LABELS, params)
        return required(row, Agent, "agent", agent_id)

    @staticmethod
    async def set_status(
        conn: db.Connection, agent_id: str, status: AgentStatus, *, allowed: Sequence[AgentStatus]
    ) -> Agent | None:
        """Set ``status`` if the agent is in one of ``allowed``; else None (also when it does not exist)."""
        params = {"id": agent_id, "status": status.value, "allowed": [s.value for s in allowed]}
        row = await db.fetch_one(conn, _SET_STATUS, params)
        return None if row is None else one(row, Agent)

    @staticmethod
    async def enable(conn: db.Connection, agent_id: str) -> Agent | None:
        """disabled → online (connected) or offline; None when the agent is not disabled or does not exist."""
        row = await db.fetch_one(conn, _ENABLE, {"id": agent_id})
        return None if row is None else one(row, Agent)

    @staticmethod
    async def disconnect(conn: db.Connection, agent_id: str, *, server_id: UUID) -> Agent | None:
        """The connection ``server_id`` held is gone; None when another server holds it by now."""
        row = await db.fetch_one(conn, _DISCONNECT, {"id": agent_id, "server_id": server_id})
        return None if row is None else one(row, Agent)

    @staticmethod
    async def mark_stale_offline(conn: db.Connection, *, before: datetime) -> list[str]:
        """Agents silent since before ``before`` go offline; their ids."""
        return [row["id"] for row in await db.fetch_all(conn, _MARK_STALE, {"before": before})]

    @staticmethod
    async def matching_online(conn: db.Connection, *, labels: dict[str, str], command: str) -> list[str]:
        """Ids of the online agents whose labels include ``labels`` and that can run ``command``."""
        params = {"labels": jsonb(labels), "command": command}
        return [row["id"] for row in await db.fetch_all(conn, _MATCHING_ONLINE, params)]

    @staticmethod
    async def delete(conn: db.Connection, agent_id: str) -> bool:
        """Delete a disconnected agent; False when it exists but is connected (or does not exist)."""
        return await db.fetch_one(conn, _DELETE, {"id": agent_id}) is not None


class AgentMsgBmc:
    """Ids of agent frames already applied, so resent frames are applied once."""

    @staticmethod
    async def record(conn: db.Connection, agent_id: str, msg_ids: Sequence[str]) -> set[str]:
        """Remember ``msg_ids`` for the agent; returns those seen for the first time."""
        if not msg_ids:
            return set()
        rows = await db.fetch_all(conn, _RECORD_MSGS, {"agent_id": agent_id, "msg_ids": list(msg_ids)})
        return {row["msg_id"] for row in rows}

    @staticmethod
    async def purge(conn: db.Connection, *, before: datetime, limit: int) -> int:
        """Retention: forget up to ``limit`` ids processed before ``before``; the number forgotten."""
        return await db.execute(conn, _PURGE_MSGS, {"before": before, "limit": limit})
