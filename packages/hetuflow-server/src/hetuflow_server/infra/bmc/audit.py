"""AuditBmc: statements on ``sched_audit``, the record of every change made through the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from hetuflow_core.notification import AuditEntry
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import jsonb, many
from hetuflow_server.infra.sql import query

__all__ = ["AuditBmc", "NewAuditEntry"]

_INSERT = query("insert_audit")
_LIST = query("list_audit")
_DELETE_BEFORE = query("delete_audit_before")


class NewAuditEntry(msgspec.Struct, kw_only=True, frozen=True):
    """What one change through the API records (its time is the transaction's)."""

    actor: str
    actor_jti: UUID | None
    scope: str
    action: str
    method: str
    path: str
    target: str
    summary: dict[str, Any]


class AuditBmc:
    """The audit trail."""

    @staticmethod
    async def insert(conn: db.Connection, entry: NewAuditEntry) -> None:
        """Record one change in the caller's transaction (the change's own), sent with its next statement or
        its COMMIT."""
        params = msgspec.structs.asdict(entry)
        params["summary"] = jsonb(entry.summary)
        await db.execute_later(conn, _INSERT, params)

    @staticmethod
    async def select_page(
        conn: db.Connection,
        *,
        before_id: int | None,
        target: str | None,
        actor: str | None,
        action: str | None,
        limit: int,
    ) -> list[AuditEntry]:
        """Up to ``limit`` entries older than ``before_id`` matching every filter given, newest first."""
        params = {"before_id": before_id, "target": target, "actor": actor, "action": action, "limit": limit}
        return many(await db.fetch_all(conn, _LIST, params), AuditEntry)

    @staticmethod
    async def delete_before(conn: db.Connection, before: datetime, *, limit: int) -> int:
        """Retention: delete up to ``limit`` entries older than ``before``; the number deleted."""
        return await db.execute(conn, _DELETE_BEFORE, {"before": before, "limit": limit})
