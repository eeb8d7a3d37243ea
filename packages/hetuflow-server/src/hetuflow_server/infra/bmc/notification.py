"""NotificationBmc: statements on ``sched_notification``, the notification outbox and delivery record.

Rows are queued by database triggers in the transaction of the state change; this module claims, finishes,
lists and ages them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from hetuflow_core.enums import NotificationEvent, NotificationStatus
from hetuflow_core.notification import NotificationDelivery
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import many
from hetuflow_server.infra.sql import query

__all__ = ["ClaimedNotification", "NotificationBmc"]

_CLAIM = query("claim_notifications")
_FINISH = query("finish_notification")
_NEXT_DUE = query("next_notification_due")
_LIST = query("list_notifications")
_DELETE_BEFORE = query("delete_notifications_before")


class ClaimedNotification(msgspec.Struct, kw_only=True, frozen=True):
    """A notification claimed for one delivery attempt (``attempts`` counts this one)."""

    id: int
    event: NotificationEvent
    target: str
    job_id: UUID | None
    task_id: UUID | None
    payload: dict[str, Any]
    attempts: int


class NotificationBmc:
    """The notification outbox."""

    @staticmethod
    async def claim(conn: db.Connection, *, limit: int, lease_secs: float) -> list[ClaimedNotification]:
        """Claim up to ``limit`` due notifications for ``lease_secs`` (see the SQL block)."""
        rows = await db.fetch_all(conn, _CLAIM, {"limit": limit, "lease_secs": lease_secs})
        return many(rows, ClaimedNotification)

    @staticmethod
    async def finish(
        conn: db.Connection,
        notification_id: int,
        *,
        attempts: int,
        status: NotificationStatus,
        response_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record the outcome of attempt ``attempts``; False when the row was claimed again meanwhile."""
        params = {
            "id": notification_id,
            "attempts": attempts,
            "status": status.value,
            "response_code": response_code,
            "error": error,
            "next_attempt_at": next_attempt_at,
        }
        return await db.fetch_one(conn, _FINISH, params) is not None

    @staticmethod
    async def next_due(conn: db.Connection) -> datetime | None:
        """When the earliest unfinished notification is due (None: none is)."""
        row = await db.fetch_one(conn, _NEXT_DUE)
        return None if row is None else row["due_at"]

    @staticmethod
    async def select_page(
        conn: db.Connection,
        *,
        before_id: int | None,
        status: NotificationStatus | None,
        target: str | None,
        job_id: UUID | None,
        task_id: UUID | None,
        limit: int,
    ) -> list[NotificationDelivery]:
        """Up to ``limit`` deliveries older than ``before_id`` matching every filter given, newest first."""
        params = {
            "before_id": before_id,
            "status": None if status is None else status.value,
            "target": target,
            "job_id": job_id,
            "task_id": task_id,
            "limit": limit,
        }
        return many(await db.fetch_all(conn, _LIST, params), NotificationDelivery)

    @staticmethod
    async def delete_before(conn: db.Connection, before: datetime, *, limit: int) -> int:
        """Retention: delete up to ``limit`` finished notifications completed before ``before``."""
        return await db.execute(conn, _DELETE_BEFORE, {"before": before, "limit": limit})
