"""HTTP and WebSocket endpoints of the server, assembled into the routes of the Starlette app.

- ``health``: ``/healthz`` and ``/readyz`` (no token).
- ``metrics``: ``/metrics``, Prometheus (no token unless ``metrics.require_token``).
- ``api``: the REST API mounted at ``/api/v1``, its OpenAPI document at ``/api/openapi.json`` and the live log
  tail (``api.log_stream``, Server-Sent Events).
- ``ws``: the agents' WebSocket, ``/api/v1/agents/ws``.
- ``web``: the web UI's files and client-side routes.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from hetuflow_server.endpoint import api, health, metrics, web, ws
from hetuflow_server.endpoint.api import log_stream

__all__ = ["routes"]


def routes() -> list[BaseRoute]:
    """Every route of the server, in matching order."""
    return [
        *health.routes(),
        *metrics.routes(),
        api.openapi_route,
        Mount(api.API_PREFIX, routes=[*api.routes(), log_stream.route(), ws.route()]),
        # Last: the UI answers only its own paths, so it shadows no API or probe route.
        web.route(),
    ]
