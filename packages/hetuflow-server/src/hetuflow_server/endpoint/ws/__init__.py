"""The agents' WebSocket: ``/api/v1/agents/ws``, where every agent connection arrives.

- ``gateway``: one connection from the upgrade request to its end (auth, registration, serving, unregister).
- ``frames``: what each frame of a registered agent does on this server's broker.

See ``docs/architecture.md`` (Connecting) for the handshake and its refusals.
"""

from __future__ import annotations

from typing import Final

from starlette.routing import WebSocketRoute

from hetuflow_server.endpoint.api.operation import API_PREFIX
from hetuflow_server.endpoint.ws.gateway import agent_socket

__all__ = ["AGENT_SOCKET_PATH", "ROUTE_PATH", "route"]

ROUTE_PATH: Final = "/agents/ws"
"""The route's path under the API's mount."""
AGENT_SOCKET_PATH: Final = API_PREFIX + ROUTE_PATH


def route() -> WebSocketRoute:
    """The agents' WebSocket route, relative to ``API_PREFIX`` (mounted with the API)."""
    return WebSocketRoute(ROUTE_PATH, agent_socket, name="agent-gateway")
