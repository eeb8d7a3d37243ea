"""The metrics that are states, read when Prometheus scrapes: agents and credits, leadership, the pool.

Nothing here is counted as it happens: the collector looks at the broker's session registry, the dispatcher
and report batcher counters, the leader lease and ``psycopg_pool``'s statistics at the moment of the scrape,
so the values are never stale and cost nothing between scrapes. Before the application serves (or for the
parts it does not have, e.g. a CLI command), the missing families are simply left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from hetuflow_server.broker import Broker
    from hetuflow_server.scheduler.leader import Leadership

__all__ = ["LiveCollector"]

# psycopg_pool.get_stats() keys → (metric name, help, scale). Gauges are the pool's current measures; the
# counters only appear in the stats once they are non-zero, so a missing one reads 0.
_POOL_GAUGES: Final = (
    ("pool_min", "hetuflow_db_pool_min_connections", "Smallest size of the connection pool."),
    ("pool_max", "hetuflow_db_pool_max_connections", "Largest size of the connection pool."),
    ("pool_size", "hetuflow_db_pool_connections", "Connections the pool holds now (idle, in use, opening)."),
    ("pool_available", "hetuflow_db_pool_idle_connections", "Idle connections ready to be handed out."),
    ("requests_waiting", "hetuflow_db_pool_requests_waiting", "Requests waiting for a connection now."),
)
_POOL_COUNTERS: Final = (
    ("requests_num", "hetuflow_db_pool_requests", "Connections requested from the pool.", 1.0),
    (
        "requests_queued",
        "hetuflow_db_pool_requests_queued",
        "Requests that had to wait for a connection.",
        1.0,
    ),
    (
        "requests_wait_ms",
        "hetuflow_db_pool_requests_wait_seconds",
        "Time requests spent waiting for a connection.",
        0.001,
    ),
    ("requests_errors", "hetuflow_db_pool_request_errors", "Requests that got no connection (timeout).", 1.0),
    ("usage_ms", "hetuflow_db_pool_usage_seconds", "Time connections were in use by the server.", 0.001),
    ("returns_bad", "hetuflow_db_pool_returns_bad", "Connections returned to the pool broken.", 1.0),
    ("connections_num", "hetuflow_db_pool_connects", "Connection attempts to the database.", 1.0),
    ("connections_ms", "hetuflow_db_pool_connect_seconds", "Time spent connecting to the database.", 0.001),
    ("connections_errors", "hetuflow_db_pool_connect_errors", "Failed connection attempts.", 1.0),
    (
        "connections_lost",
        "hetuflow_db_pool_connections_lost",
        "Idle connections found broken by a check.",
        1.0,
    ),
)


class LiveCollector(Collector):
    """Reads ``broker``, ``leadership`` and ``pool`` when set (see the module docstring)."""

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool[Any] | None = None
        self.broker: Broker | None = None
        self.leadership: Leadership | None = None

    def describe(self) -> list[Metric]:
        # Names come and go with what is tracked; describing none keeps registration from collecting early.
        return []

    def collect(self) -> Iterator[Metric]:
        if self.broker is not None:
            yield from _agents(self.broker)
        if self.leadership is not None:
            yield GaugeMetricFamily(
                "hetuflow_leader",
                "1 while this server holds the leader lease (generation, reaping, retention), else 0.",
                value=1.0 if self.leadership.is_leader else 0.0,
            )
        if self.pool is not None:
            yield from _pool(self.pool.get_stats())


def _agents(broker: Broker) -> Iterator[Metric]:
    sessions = list(broker.registry)
    live = [session for session in sessions if session.open]
    yield GaugeMetricFamily(
        "hetuflow_agents_connected", "Agents connected to this server.", value=len(sessions)
    )
    yield GaugeMetricFamily(
        "hetuflow_agents_draining",
        "Connected agents that take no new work (draining, disabled or closing).",
        value=sum(1 for session in sessions if session.draining or not session.open),
    )
    yield GaugeMetricFamily(
        "hetuflow_agent_capacity_slots",
        "Task slots of the connected agents (their announced capacity).",
        value=sum(session.capacity for session in live),
    )
    yield GaugeMetricFamily(
        "hetuflow_agent_credits",
        "Free slots the connected agents announced and this server has not used yet.",
        value=sum(session.credits for session in live if not session.draining),
    )
    yield GaugeMetricFamily(
        "hetuflow_agent_dispatches_unacked",
        "Dispatches sent to agents and not acknowledged yet.",
        value=sum(session.awaiting_ack for session in live),
    )
    yield CounterMetricFamily(
        "hetuflow_dispatch_rounds", "Dispatcher rounds run by this server.", value=broker.dispatcher.rounds
    )
    yield CounterMetricFamily(
        "hetuflow_report_batches",
        "Batches of agent reports and log chunks stored by this server.",
        value=broker.reports.batches,
    )


def _pool(stats: Mapping[str, int]) -> Iterator[Metric]:
    for key, name, documentation in _POOL_GAUGES:
        yield GaugeMetricFamily(name, documentation, value=stats.get(key, 0))
    for key, name, documentation, scale in _POOL_COUNTERS:
        yield CounterMetricFamily(name, documentation, value=stats.get(key, 0) * scale)
