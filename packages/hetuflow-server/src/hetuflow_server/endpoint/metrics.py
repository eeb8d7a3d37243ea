"""``GET /metrics``: the server's Prometheus metrics in the text exposition format (OpenMetrics on request).

Open to anyone who reaches the port by default, like most exporters; with ``metrics.require_token`` it needs
a bearer token of scope ``read`` (or ``admin``) and answers 401/403 problems like the API otherwise.
"""

from __future__ import annotations

from typing import Protocol, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hetuflow_core.enums import TokenScope
from hetuflow_server.auth import guard
from hetuflow_server.config import ServerConfig
from hetuflow_server.endpoint.api.problems import error_response
from hetuflow_server.errors import HetuflowError
from hetuflow_server.metrics import ServerMetrics

__all__ = ["METRICS_PATH", "routes"]

METRICS_PATH = "/metrics"


class _Metered(Protocol):
    """The part of the application container this endpoint uses."""

    config: ServerConfig
    metrics: ServerMetrics


async def metrics(request: Request) -> Response:
    """The current value of every metric of this server."""
    application = cast(_Metered, request.app.state.hetuflow)
    if application.config.metrics.require_token:
        try:
            await guard.authorize(request, TokenScope.READ)
        except HetuflowError as exc:
            return error_response(request, exc)
    body, content_type = application.metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def routes() -> list[BaseRoute]:
    """The metrics route, for the root of the application."""
    return [Route(METRICS_PATH, metrics, methods=["GET"], name="metrics")]
