"""``/api/v1/notifications/deliveries``: the record of notifications sent to webhooks and email targets."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.enums import NotificationStatus
from hetuflow_core.notification import NotificationDelivery
from hetuflow_core.types import Name
from hetuflow_server.endpoint.api.operation import Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery

__all__ = ["operations"]

operations = Operations("notifications", "Notifications of outcomes to webhooks and email")


class DeliveryQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/notifications/deliveries``: every filter given must match."""

    status: NotificationStatus | None = None
    target: Annotated[Name, msgspec.Meta(description="Name of a configured target")] | None = None
    job_id: UUID | None = None
    task_id: UUID | None = None


@operations.get("/notifications/deliveries", summary="List notification deliveries")
async def list_deliveries(ctx: Context, query: DeliveryQuery) -> Page[NotificationDelivery]:
    """One record per notification of one event to one target, newest first: its status (``pending``,
    ``sending``, ``delivered``, ``failed``), the attempts made, the last response code and error, and the
    JSON body sent."""
    return await ctx.services.notifications.list_deliveries(
        status=query.status,
        target=query.target,
        job_id=query.job_id,
        task_id=query.task_id,
        cursor=query.cursor,
        limit=query.limit,
    )
