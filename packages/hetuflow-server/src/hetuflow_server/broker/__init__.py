"""The broker: the agent gateway, the dispatcher and everything else between this server and its agents.

- `Broker` (``broker.py``): the container of the parts below, built by the application when it serves.
- ``gateway``: the ``/api/v1/agents/ws`` WebSocket endpoint (auth before the upgrade, registration, frames).
- ``session`` / ``registry``: one connected agent (its frames, credits, unacked dispatches) and all of them.
- ``dispatcher``: claims due work for the connected agents and pushes ``ScheduledTask`` frames.
- ``batcher``: stores status reports and log chunks of all agents in batches, then acks them.
- ``liveness``: heartbeats, the state sync they carry, and the leader's reaper of silent agents.
- ``commands``: agent commands (cancel, drain, relabel) routed through NOTIFY to the server holding the agent.
- ``logtail``: ``/api/v1/instances/{id}/logs/stream``, the live tail of an attempt's log (Server-Sent Events).

See ``docs/architecture.md`` for how dispatch, acks, liveness and cancel fit together.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from hetuflow_server.broker import gateway, logtail
from hetuflow_server.broker.broker import Broker, BrokerSettings
from hetuflow_server.endpoint.api.operation import API_PREFIX

__all__ = ["AGENT_SOCKET_PATH", "LOG_STREAM_PATH", "Broker", "BrokerSettings", "routes"]

AGENT_SOCKET_PATH = f"{API_PREFIX}/agents/ws"
LOG_STREAM_PATH = API_PREFIX + "/instances/{instance_id:uuid}/logs/stream"


def routes() -> list[BaseRoute]:
    """The broker's routes; mount them before the API (whose mount would otherwise take their paths)."""
    return [
        WebSocketRoute(AGENT_SOCKET_PATH, gateway.agent_socket, name="agent-gateway"),
        Route(LOG_STREAM_PATH, logtail.stream_logs, methods=["GET"], name="instance-log-stream"),
    ]
