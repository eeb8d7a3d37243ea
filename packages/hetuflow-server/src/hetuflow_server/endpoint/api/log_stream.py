"""Live tail of an attempt's log: ``GET /api/v1/instances/{id}/logs/stream`` as Server-Sent Events.

The stream first sends the chunks already stored after ``after_seq`` (or the ``Last-Event-ID`` a reconnecting
``EventSource`` sends), then new ones as they are stored, each as a ``log`` event whose data is a
``TaskLogEntry`` in JSON; the last event of every read carries the read position as its ``id``, so a client
that reconnects resumes exactly there. Once the attempt is final and everything stored has been sent, an
``end`` event with its status closes the stream (the batcher stores an attempt's chunks before its final
report, so nothing is left behind). While nothing happens a comment line keeps proxies from timing out.

New chunks stored on this server wake the stream at once (the broker's `LogWatch`); chunks stored by another
server (the agent is connected there) are picked up by a short poll. Requires a token with ``read`` scope;
the stream ends (without an ``end`` event) within a poll once that token is revoked or expires, and a client
that reconnects is then refused with 401.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Final, Protocol, cast
from uuid import UUID

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hetuflow_core.enums import InstanceStatus, TokenScope
from hetuflow_core.task import TaskLogEntry
from hetuflow_server.auth import Principal, TokenService, guard
from hetuflow_server.broker import Broker
from hetuflow_server.endpoint.api.openapi import EventStream
from hetuflow_server.endpoint.api.operation import API_PREFIX, PathParam
from hetuflow_server.endpoint.api.tasks import instance_operations
from hetuflow_server.errors import FieldProblem, InvalidInput
from hetuflow_server.service import Services

__all__ = ["LOG_STREAM_PATH", "LogStreamEnd", "LogStreamQuery", "event_stream", "route", "stream_logs"]

ROUTE_PATH: Final = "/instances/{instance_id:uuid}/logs/stream"
"""The route's path under the API's mount."""
LOG_STREAM_PATH: Final = API_PREFIX + ROUTE_PATH
POLL_SECS: Final = 0.5
"""How often an idle stream looks for chunks stored elsewhere and for the end of the attempt."""
KEEPALIVE_SECS: Final = 15.0
"""Idle time after which a comment line is sent."""
PAGE_SIZE: Final = 500
"""Chunks read per query."""

_entry_encoder = msgspec.json.Encoder()


class LogStreamQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/instances/{id}/logs/stream`` (a ``Last-Event-ID`` header takes its place)."""

    after_seq: Annotated[
        int,
        msgspec.Meta(
            ge=0, le=2**62, description="Position to stream after; 0 is the start of the log (the default)"
        ),
    ] = 0


class LogStreamEnd(msgspec.Struct, kw_only=True):
    """Data of the ``end`` event of a live log tail: the attempt and the state it ended in."""

    instance_id: UUID
    status: InstanceStatus


event_stream = EventStream(
    path="/instances/{instance_id}/logs/stream",
    operation_id="stream_instance_logs",
    summary="Live tail of an attempt's log",
    description=(
        "Server-Sent Events: the chunks stored after `after_seq` (or after the `Last-Event-ID` header a "
        "reconnecting client sends), then new ones as they are stored, each a `log` event whose data is a "
        "`TaskLogEntry` in JSON; the last event of every read carries the read position as its `id`. When "
        "the attempt has ended and everything stored was sent, an `end` event (`instance_id`, `status`) "
        "closes the stream. Idle streams get a comment line every 15 s. A stream whose token is revoked or "
        "expires is cut off without an `end` event (reconnecting then answers 401)."
    ),
    tag=instance_operations.tag,
    scope=TokenScope.READ,
    query=LogStreamQuery,
    path_params=(PathParam("instance_id", UUID, "instance"),),
    events=(
        ("log", TaskLogEntry, "A stored log chunk; `id` is the read position after it on the last of a read"),
        ("end", LogStreamEnd, "The attempt ended and everything stored was sent; the stream closes"),
    ),
)
"""``GET /api/v1/instances/{instance_id}/logs/stream``: not an ``Operation`` (it answers a stream), documented
in the OpenAPI document all the same."""


class _Container(Protocol):
    @property
    def services(self) -> Services: ...

    @property
    def broker(self) -> Broker: ...

    @property
    def tokens(self) -> TokenService: ...


def route() -> Route:
    """The stream's route, relative to ``API_PREFIX`` (mounted with the API)."""
    return Route(ROUTE_PATH, stream_logs, methods=["GET"], name="instance-log-stream")


async def stream_logs(request: Request) -> Response:
    """The SSE endpoint (see the module docstring)."""
    principal = await guard.authorize(request, TokenScope.READ)
    container = cast(_Container, request.app.state.hetuflow)
    instance_id: UUID = request.path_params["instance_id"]
    after = _start_position(request)
    await container.services.instances.get(instance_id)  # NotFound → 404 problem before the stream starts
    return StreamingResponse(
        _events(container, principal, instance_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _start_position(request: Request) -> int:
    last_event_id = request.headers.get("last-event-id")
    raw = dict(request.query_params.items())
    if last_event_id is not None:
        raw["after_seq"] = last_event_id
    try:
        return msgspec.convert(raw, LogStreamQuery, strict=False).after_seq
    except msgspec.ValidationError as exc:
        raise InvalidInput(
            f"bad query: {exc}", [FieldProblem("$.after_seq", "must be an integer >= 0")]
        ) from None


async def _events(
    container: _Container, principal: Principal, instance_id: UUID, after: int
) -> AsyncIterator[bytes]:
    with container.tokens.watch(principal) as revoked:
        async with contextlib.aclosing(_tail(container, instance_id, after, revoked)) as events:
            async for event in events:
                yield event


async def _tail(
    container: _Container, instance_id: UUID, after: int, revoked: asyncio.Event
) -> AsyncGenerator[bytes, None]:
    services = container.services
    position = after
    final_seen = False
    idle = 0.0
    while not container.broker.draining.is_set() and not revoked.is_set():
        page = await services.instances.logs(instance_id, after_seq=position, limit=PAGE_SIZE)
        if page.items:
            yield _log_events(page.items, page.next_after_seq)
            position = page.next_after_seq
            idle = 0.0
            continue  # a page is bounded in bytes too: only an empty read says there is nothing more now
        if final_seen:
            instance = await services.instances.get(instance_id)
            yield _event("end", LogStreamEnd(instance_id=instance_id, status=instance.status))
            return
        if (await services.instances.get(instance_id)).status.is_final:
            final_seen = True  # one more read: chunks stored before the final report was applied
            continue
        await container.broker.log_watch.wait(instance_id, POLL_SECS)
        idle += POLL_SECS
        if idle >= KEEPALIVE_SECS:
            idle = 0.0
            yield b": keep-alive\n\n"


def _log_events(entries: list[TaskLogEntry], position: int) -> bytes:
    parts = []
    for index, entry in enumerate(entries):
        event_id = f"id: {position}\n" if index == len(entries) - 1 else ""
        parts.append(b"event: log\n" + event_id.encode() + b"data: " + _entry_encoder.encode(entry) + b"\n\n")
    return b"".join(parts)


def _event(name: str, data: object) -> bytes:
    return f"event: {name}\n".encode() + b"data: " + _entry_encoder.encode(data) + b"\n\n"
