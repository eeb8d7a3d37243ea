"""HTTP and WebSocket endpoints of the server, assembled into the routes of the Starlette app.

- ``health``: ``/healthz`` and ``/readyz`` (no token).
- ``metrics``: ``/metrics``, Prometheus (no token unless ``metrics.require_token``).
- ``api``: the REST API mounted at ``/api/v1`` and its OpenAPI document at ``/api/openapi.json``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from hetuflow_server.endpoint import api, health, metrics

__all__ = ["routes"]


def routes() -> list[BaseRoute]:
    """Every route of the server, in matching order."""
    return [
        *health.routes(),
        *metrics.routes(),
        api.openapi_route,
        Mount(api.API_PREFIX, routes=api.routes()),
    ]
