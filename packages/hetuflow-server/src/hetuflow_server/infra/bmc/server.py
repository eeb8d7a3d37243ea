"""ServerBmc, LeaseBmc and UptimeBmc: server rows, leases with fencing tokens for singleton work (HA), and
since when the scheduler has been up without a gap."""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

import msgspec

from hetuflow_core.agent import Server
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import many, one, required
from hetuflow_server.infra.sql import query

__all__ = ["LEADER_LEASE", "Lease", "LeaseBmc", "ServerBmc", "UptimeBmc"]

LEADER_LEASE: Final = "leader"
"""Name of the lease whose holder is the leader (``Server.is_leader``)."""

_REGISTER = query("register_server")
_HEARTBEAT = query("heartbeat_server")
_DEACTIVATE = query("deactivate_server")
_MARK_STALE = query("mark_stale_servers_inactive")
_LIST = query("list_servers")
_ACQUIRE = query("acquire_lease")
_RELEASE = query("release_lease")
_GET_LEASE = query("get_lease")
_HOLD = query("hold_lease")
_MARK_UP = query("mark_scheduler_up")
_UP_SINCE = query("scheduler_up_since")


class Lease(msgspec.Struct, kw_only=True, frozen=True):
    """A lease on singleton work: who holds it until when, and the fencing token of this tenure."""

    name: str
    holder: UUID
    token: int
    acquired_at: datetime
    expires_at: datetime


class ServerBmc:
    """Server processes sharing the database."""

    @staticmethod
    async def register(conn: db.Connection, server_id: UUID, *, name: str, address: str | None) -> Server:
        """Create or reactivate the server row."""
        params = {"id": server_id, "name": name, "address": address, "leader_lease": LEADER_LEASE}
        return required(await db.fetch_one(conn, _REGISTER, params), Server, "server", server_id)

    @staticmethod
    async def heartbeat(conn: db.Connection, server_id: UUID) -> bool:
        """Mark the server alive now; False when its row is gone."""
        return await db.fetch_one(conn, _HEARTBEAT, {"id": server_id}) is not None

    @staticmethod
    async def deactivate(conn: db.Connection, server_id: UUID) -> bool:
        """Mark the server inactive (clean shutdown)."""
        return await db.fetch_one(conn, _DEACTIVATE, {"id": server_id}) is not None

    @staticmethod
    async def mark_stale_inactive(conn: db.Connection, *, before: datetime) -> list[UUID]:
        """Servers silent since before ``before`` become inactive; their ids."""
        return [row["id"] for row in await db.fetch_all(conn, _MARK_STALE, {"before": before})]

    @staticmethod
    async def select_all(conn: db.Connection) -> list[Server]:
        """Every server, oldest first, with whether it holds the leader lease now."""
        return many(await db.fetch_all(conn, _LIST, {"leader_lease": LEADER_LEASE}), Server)


class LeaseBmc:
    """Leases: at most one live holder per name; the token grows with every change of tenure."""

    @staticmethod
    async def acquire(conn: db.Connection, name: str, *, holder: UUID, ttl_secs: float) -> Lease | None:
        """Take or renew the lease for ``ttl_secs``; None while another holder's lease is live."""
        row = await db.fetch_one(conn, _ACQUIRE, {"name": name, "holder": holder, "ttl_secs": ttl_secs})
        return None if row is None else one(row, Lease)

    @staticmethod
    async def release(conn: db.Connection, name: str, *, holder: UUID) -> bool:
        """Give the lease up now if ``holder`` holds it."""
        return await db.fetch_one(conn, _RELEASE, {"name": name, "holder": holder}) is not None

    @staticmethod
    async def get(conn: db.Connection, name: str) -> Lease | None:
        """The lease row (live or expired), or None if never taken."""
        row = await db.fetch_one(conn, _GET_LEASE, {"name": name})
        return None if row is None else one(row, Lease)

    @staticmethod
    async def hold(conn: db.Connection, name: str, *, holder: UUID, token: int) -> bool:
        """Fencing check: True while ``holder`` holds ``name`` with ``token``; then no takeover can happen
        before the caller's transaction ends (the row is share-locked)."""
        params = {"name": name, "holder": holder, "token": token}
        return await db.fetch_one(conn, _HOLD, params) is not None


class UptimeBmc:
    """Since when some server has been up without a silence longer than a gap: whether a slot's time fell in
    an outage."""

    @staticmethod
    async def mark_up(conn: db.Connection, *, gap_secs: float) -> datetime:
        """Record that a server is up now; a silence of all servers longer than ``gap_secs`` (that of the last
        writer) restarts the uptime. Returns its start."""
        row = await db.fetch_one(conn, _MARK_UP, {"gap_secs": gap_secs})
        assert row is not None, "an upsert returns its row"
        value: datetime = row["up_since"]
        return value

    @staticmethod
    async def up_since(conn: db.Connection) -> datetime:
        """Since when the scheduler has been up without a gap (the transaction's time if it was not)."""
        row = await db.fetch_one(conn, _UP_SINCE, {})
        assert row is not None, "the query always returns one row"
        value: datetime = row["up_since"]
        return value
