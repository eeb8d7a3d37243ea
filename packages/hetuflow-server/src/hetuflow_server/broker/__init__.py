"""The broker: this server's side of the agent pipeline, between the agents' WebSocket and the services.

- `Broker` (``broker.py``): the container of the parts below, built by the application when it serves.
- ``session`` / ``registry``: one connected agent (its frames, credits, unacked dispatches) and all of them.
- ``dispatcher``: claims due work for the connected agents and pushes ``ScheduledTask`` frames.
- ``batcher``: stores status reports and log chunks of all agents in batches, then acks them.
- ``liveness``: heartbeats, the state sync they carry, and the leader's reaper of silent agents.
- ``commands``: agent commands (cancel, drain, relabel) routed through NOTIFY to the server holding the agent.
- ``logwatch``: wakes the live log tails when the batcher stores something for their attempt.

The transports that use it (the agents' WebSocket, the live log tail) live in ``endpoint``. See
``docs/architecture.md`` for how dispatch, acks, liveness and cancel fit together.
"""

from __future__ import annotations

from hetuflow_server.broker.broker import Broker, BrokerSettings
from hetuflow_server.broker.logwatch import LogWatch

__all__ = ["Broker", "BrokerSettings", "LogWatch"]
