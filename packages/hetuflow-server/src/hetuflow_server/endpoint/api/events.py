"""``/api/v1/events/{name}``: fire a named event, starting every enabled job that listens to it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from hetuflow_core.task import TriggerResult
from hetuflow_core.types import Name
from hetuflow_server.endpoint.api.operation import Context, Operations

__all__ = ["EventPayload", "operations"]

operations = Operations("events", "Named events that start event-scheduled jobs")

EventPayload = Annotated[
    dict[str, Any],
    msgspec.Meta(description="Any JSON object; it becomes the parameters of every task the event creates"),
]


@operations.post(
    "/events/{event_name}", summary="Fire an event", status=201, resources={"event_name": "event"}
)
async def fire_event(ctx: Context, event_name: Name, body: EventPayload) -> TriggerResult:
    """Create one task for every enabled job whose enabled ``event`` schedule listens to ``event_name``, with
    the schedule's parameters overlaid by the payload; answers the ids of the tasks (possibly none)."""
    return await ctx.services.events.fire(event_name, body, by=ctx.actor)
