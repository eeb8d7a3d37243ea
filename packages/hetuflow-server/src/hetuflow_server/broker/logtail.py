"""Live tail of an attempt's log: ``GET /api/v1/instances/{id}/logs/stream`` as Server-Sent Events.

The stream first sends the chunks already stored after ``after_seq`` (or the ``Last-Event-ID`` a reconnecting
``EventSource`` sends), then new ones as they are stored, each as a ``log`` event whose data is a
``TaskLogEntry`` in JSON; the last event of every read carries the read position as its ``id``, so a client
that reconnects resumes exactly there. Once the attempt is final and everything stored has been sent, an
``end`` event with its status closes the stream (the batcher stores an attempt's chunks before its final
report, so nothing is left behind). While nothing happens a comment line keeps proxies from timing out.

New chunks stored on this server wake the stream at once (`LogWatch`); chunks stored by another server (the
agent is connected there) are picked up by a short poll. Requires a token with ``read`` scope.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Final, Protocol, cast
from uuid import UUID

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hetuflow_core.enums import TokenScope
from hetuflow_core.task import TaskLogEntry
from hetuflow_server.auth import guard
from hetuflow_server.endpoint.api.tasks import LogStreamEnd, LogStreamQuery
from hetuflow_server.errors import FieldProblem, InvalidInput
from hetuflow_server.service import Services

__all__ = ["LogWatch", "stream_logs"]

POLL_SECS: Final = 0.5
"""How often an idle stream looks for chunks stored elsewhere and for the end of the attempt."""
KEEPALIVE_SECS: Final = 15.0
"""Idle time after which a comment line is sent."""
PAGE_SIZE: Final = 500
"""Chunks read per query."""

_entry_encoder = msgspec.json.Encoder()


class LogWatch:
    """Wakes the live tails of attempts whose logs or status just changed on this server."""

    def __init__(self) -> None:
        self._waiters: dict[UUID, set[asyncio.Event]] = defaultdict(set)

    def notify(self, instance_ids: Iterable[UUID]) -> None:
        """Something about these attempts was stored."""
        for instance_id in instance_ids:
            for event in self._waiters.get(instance_id, ()):
                event.set()

    async def wait(self, instance_id: UUID, timeout_secs: float) -> None:
        """Return when ``instance_id`` changes here or after ``timeout_secs``."""
        event = asyncio.Event()
        self._waiters[instance_id].add(event)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_secs):
                    await event.wait()
        finally:
            waiters = self._waiters[instance_id]
            waiters.discard(event)
            if not waiters:
                del self._waiters[instance_id]


class _Broker(Protocol):
    @property
    def draining(self) -> asyncio.Event: ...

    @property
    def log_watch(self) -> LogWatch: ...


class _Container(Protocol):
    @property
    def services(self) -> Services: ...

    @property
    def broker(self) -> _Broker: ...


async def stream_logs(request: Request) -> Response:
    """The SSE endpoint (see the module docstring)."""
    await guard.authorize(request, TokenScope.READ)
    container = cast(_Container, request.app.state.hetuflow)
    instance_id: UUID = request.path_params["instance_id"]
    after = _start_position(request)
    await container.services.instances.get(instance_id)  # NotFound → 404 problem before the stream starts
    return StreamingResponse(
        _events(container, instance_id, after),
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


async def _events(container: _Container, instance_id: UUID, after: int) -> AsyncIterator[bytes]:
    services = container.services
    position = after
    final_seen = False
    idle = 0.0
    while not container.broker.draining.is_set():
        page = await services.instances.logs(instance_id, after_seq=position, limit=PAGE_SIZE)
        if page.items:
            yield _log_events(page.items, page.next_after_seq)
            position = page.next_after_seq
            idle = 0.0
            if len(page.items) == PAGE_SIZE:
                continue
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
