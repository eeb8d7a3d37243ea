"""Notification deliveries: what was sent to which target, for ``GET /notifications/deliveries``."""

from __future__ import annotations

from uuid import UUID

from hetuflow_core.api import Page
from hetuflow_core.enums import NotificationStatus
from hetuflow_core.notification import NotificationDelivery
from hetuflow_server.infra import bmc
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service._paging import DEFAULT_LIMIT, check_limit, decode_serial_cursor, make_page

__all__ = ["NotificationService"]


class NotificationService:
    """Reads the notification outbox (the notifier, not this service, sends and records)."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def list_deliveries(
        self,
        *,
        status: NotificationStatus | None = None,
        target: str | None = None,
        job_id: UUID | None = None,
        task_id: UUID | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[NotificationDelivery]:
        """A page of deliveries, newest first, matching every filter given."""
        limit = check_limit(limit)
        before = decode_serial_cursor(cursor)
        async with self._db.transaction() as conn:
            rows = await bmc.NotificationBmc.select_page(
                conn,
                before_id=before,
                status=status,
                target=target,
                job_id=job_id,
                task_id=task_id,
                limit=limit + 1,
            )
        return make_page(rows, limit, lambda delivery: (delivery.id,))
