"""The REST API: every operation under ``/api/v1``, its OpenAPI 3.1 document and its problem responses.

- ``routes()``: the Starlette routes, relative to ``API_PREFIX`` (the application mounts them there).
- ``openapi_route``: ``GET /api/openapi.json``, the document generated from the declared operations.
- ``exception_handlers``: for the Starlette app, so that routing errors (404/405), guard errors raised outside
  the API's handlers and unexpected exceptions are ``application/problem+json`` too.

Each resource module declares its operations with ``operation.Operations``; ``OPERATION_GROUPS`` lists them in
the order the document shows them. ``EVENT_STREAMS`` lists the streaming routes the document describes too.
"""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hetuflow_server.endpoint.api import (
    agents,
    audit,
    events,
    flows,
    jobs,
    log_stream,
    notifications,
    openapi,
    schedules,
    stats,
    tasks,
    tokens,
)
from hetuflow_server.endpoint.api.operation import API_PREFIX, Operations, routes_for
from hetuflow_server.endpoint.api.problems import PROBLEM_MEDIA_TYPE, exception_handlers

__all__ = [
    "API_PREFIX",
    "EVENT_STREAMS",
    "OPENAPI_PATH",
    "OPERATION_GROUPS",
    "PROBLEM_MEDIA_TYPE",
    "exception_handlers",
    "openapi_document",
    "openapi_route",
    "routes",
]

OPENAPI_PATH = openapi.OPENAPI_PATH

OPERATION_GROUPS: tuple[Operations, ...] = (
    jobs.operations,
    schedules.operations,
    tasks.operations,
    tasks.instance_operations,
    agents.operations,
    agents.server_operations,
    events.operations,
    flows.operations,
    tokens.operations,
    notifications.operations,
    audit.operations,
    stats.operations,
)


EVENT_STREAMS: tuple[openapi.EventStream, ...] = (log_stream.event_stream,)
"""Routes answering Server-Sent Events: served by handlers of their own, documented with the operations."""


def routes() -> list[BaseRoute]:
    """The API's routes, relative to ``API_PREFIX``."""
    return list(routes_for([operation for group in OPERATION_GROUPS for operation in group.operations]))


@functools.cache
def openapi_document() -> bytes:
    """The OpenAPI document as JSON bytes, built once per process."""
    return openapi.encode_document(openapi.build_document(OPERATION_GROUPS, EVENT_STREAMS))


async def _serve_openapi(request: Request) -> Response:
    # Public on purpose: the document describes the API, it holds no data, and tools fetch it unauthenticated.
    return Response(openapi_document(), media_type="application/json")


openapi_route = Route(OPENAPI_PATH, _serve_openapi, methods=["GET"], name="openapi")
