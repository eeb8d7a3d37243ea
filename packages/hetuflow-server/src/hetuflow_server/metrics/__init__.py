"""Prometheus metrics of a server: what operators watch, served at ``GET /metrics``.

- `ServerMetrics`: the metrics of one application in a registry of its own (never the global one), fed by
  the dispatch service (``DispatchObserver``), the generator, retention and the middleware, and reading the
  agents, the leader lease and the connection pool when scraped.
- `MetricsMiddleware`: HTTP requests by route template and status with their latency; error frames and close
  codes on the agent WebSocket.
- `ObservedGenerator`: the task generator counting its cycles.

Every metric is listed with its meaning in ``docs/operations.md`` (section "Metrics").
"""

from __future__ import annotations

from hetuflow_server.metrics._asgi import UNMATCHED_ROUTE, MetricsMiddleware, route_template
from hetuflow_server.metrics._generation import ObservedGenerator
from hetuflow_server.metrics._registry import ServerMetrics

__all__ = ["UNMATCHED_ROUTE", "MetricsMiddleware", "ObservedGenerator", "ServerMetrics", "route_template"]
