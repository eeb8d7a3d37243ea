"""`ServerMetrics`: every Prometheus metric of one server process, in a registry of its own.

The registry is never prometheus_client's global one, so several applications in one process (tests, an
embedding program) each count only their own work. Counters are fed by the parts that do the work, through
small methods named for what happened (``dispatched``, ``reports_applied``, ``generation_cycle`` ...); what
is a state rather than an event (connected agents, credits, leadership, the connection pool) is read when
Prometheus scrapes, by the collector of ``_live``. Counters count what *this* server did; sum them over the
servers of a cluster.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from hetuflow_core.enums import ProtocolErrorCode
from hetuflow_server.__about__ import __version__
from hetuflow_server.metrics._live import LiveCollector
from hetuflow_server.service import ReportOutcome, ReportResult

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from hetuflow_server.broker import Broker
    from hetuflow_server.scheduler.generator import CycleReport
    from hetuflow_server.scheduler.leader import Leadership

__all__ = ["ServerMetrics"]

GC_PAUSE_BUCKETS_SECS: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Up to a second: a full collection of a large heap; the fleet goal is that none exceeds 20 ms."""
DISPATCH_DELAY_BUCKETS_SECS: Final = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
"""From "on time" to "five minutes late": a backlog shows up in the upper buckets."""
HTTP_BUCKETS_SECS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PROTOCOL_CODES: Final = frozenset(code.value for code in ProtocolErrorCode)


class ServerMetrics:
    """The metrics of one server process (module docstring); ``registry`` is what ``/metrics`` serves."""

    def __init__(self, *, server_id: UUID, server_name: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Process CPU, memory and file descriptors, the Python version and GC: what every exporter offers.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("hetuflow_server", "This server process.", registry=r).info(
            {"version": __version__, "server_id": str(server_id), "name": server_name}
        )
        self._live = LiveCollector()
        r.register(self._live)

        self._gc_pause = Histogram(
            "hetuflow_gc_pause_seconds",
            "Collections of the Python garbage collector in the serving process: how long each stopped it.",
            ["generation"],
            buckets=GC_PAUSE_BUCKETS_SECS,
            registry=r,
        )
        self._gc_started = 0.0
        self._dispatched = Counter(
            "hetuflow_tasks_dispatched", "Attempts this server created for its agents.", registry=r
        )
        self._dispatch_delay = Histogram(
            "hetuflow_dispatch_delay_seconds",
            "How long after its due time an attempt was dispatched (0 when pushed ahead of it).",
            buckets=DISPATCH_DELAY_BUCKETS_SECS,
            registry=r,
        )
        self._completed = Counter(
            "hetuflow_tasks_completed",
            "Tasks that reached a final status through reports this server applied, by status.",
            ["status"],
            registry=r,
        )
        self._reports = Counter(
            "hetuflow_agent_reports",
            "Status reports of agents, by outcome (applied, duplicate, late, refused).",
            ["outcome"],
            registry=r,
        )
        self._lost = Counter(
            "hetuflow_instances_lost",
            "Attempts this server declared lost (agent silent or gone, attempt unknown to it).",
            registry=r,
        )
        self._protocol_errors = Counter(
            "hetuflow_protocol_errors",
            "Error frames sent to agents (frames the server refused), by protocol error code.",
            ["code"],
            registry=r,
        )
        self._socket_closes = Counter(
            "hetuflow_agent_socket_closes",
            "Agent WebSocket connections closed or refused by this server, by close code.",
            ["code"],
            registry=r,
        )
        self._slots = Counter(
            "hetuflow_generated_slots",
            "Schedule slots the task generator went through, by outcome (task, missed, deduplicated).",
            ["outcome"],
            registry=r,
        )
        self._expired = Counter("hetuflow_schedules_expired", "Schedules whose last slot passed.", registry=r)
        self._cycles = Counter(
            "hetuflow_generation_cycles",
            "Task generation cycles run while leading, by result (ok, lost_lease, error).",
            ["result"],
            registry=r,
        )
        self._retention = Counter(
            "hetuflow_retention_deleted_rows",
            "Rows deleted by retention, by table.",
            ["table"],
            registry=r,
        )
        self._stale_servers = Counter(
            "hetuflow_servers_marked_inactive",
            "Servers marked inactive by retention after their heartbeats stopped.",
            registry=r,
        )
        self._http_requests = Counter(
            "hetuflow_http_requests",
            "HTTP requests, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self._http_duration = Histogram(
            "hetuflow_http_request_duration_seconds",
            "Time from the request to the end of the response, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS_SECS,
            registry=r,
        )

    # -- state read at scrape time --------------------------------------------------------------------------

    def track(
        self,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
        broker: Broker | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        """Read these objects' state on every scrape from now on (connection pool, agents, leader lease)."""
        if pool is not None:
            self._live.pool = pool
        if broker is not None:
            self._live.broker = broker
        if leadership is not None:
            self._live.leadership = leadership

    # -- events (DispatchObserver and friends) -------------------------------------------------------------

    def dispatched(self, delays_secs: Sequence[float]) -> None:
        """Attempts were dispatched, each ``delay`` seconds after its due time."""
        self._dispatched.inc(len(delays_secs))
        for delay in delays_secs:
            self._dispatch_delay.observe(delay)

    def reports_applied(self, results: Sequence[ReportResult | None], *, by_agent: bool) -> None:
        """Reports were applied: an agent's (None: a resent frame, skipped) or the server's lost verdicts."""
        for result in results:
            if by_agent:
                self._reports.labels("duplicate" if result is None else result.outcome.value).inc()
            elif result is not None and result.outcome is ReportOutcome.APPLIED:
                self._lost.inc()
            if result is not None and result.task is not None and result.task.status.is_final:
                self._completed.labels(result.task.status.value).inc()

    def generation_cycle(self, report: CycleReport | None) -> None:
        """A generation cycle ended (None: it failed)."""
        if report is None:
            self._cycles.labels("error").inc()
            return
        self._cycles.labels("lost_lease" if report.lost_lease else "ok").inc()
        for outcome, count in (
            ("task", report.tasks),
            ("missed", report.missed),
            ("deduplicated", report.deduplicated),
        ):
            if count:
                self._slots.labels(outcome).inc(count)
        if report.expired:
            self._expired.inc(report.expired)

    def retention_deleted(self, table: str, rows: int) -> None:
        """Retention deleted ``rows`` rows of ``table``."""
        if rows:
            self._retention.labels(table).inc(rows)

    def servers_marked_inactive(self, count: int) -> None:
        """Retention marked ``count`` silent servers inactive."""
        if count:
            self._stale_servers.inc(count)

    def http_request(self, method: str, route: str, status: int, duration_secs: float) -> None:
        """An HTTP request ended; ``route`` is its template (``/api/v1/jobs/{job_id}``), not the raw path."""
        method = method if method in _HTTP_METHODS else "other"  # bounded label values whatever clients send
        self._http_requests.labels(method, route, str(status)).inc()
        self._http_duration.labels(method, route).observe(duration_secs)

    def watch_gc_pauses(self) -> None:
        """Time every collection of the garbage collector from now on (``hetuflow_gc_pause_seconds``): a
        collection stops every connection at once, so its length is a latency every client sees."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def unwatch_gc_pauses(self) -> None:
        """Stop timing collections (the application stops)."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_pause.labels(str(info["generation"])).observe(time.perf_counter() - self._gc_started)

    def protocol_error(self, code: str) -> None:
        """The server refused an agent's frame with an error frame carrying ``code``."""
        self._protocol_errors.labels(code if code in _PROTOCOL_CODES else "other").inc()

    def agent_socket_closed(self, code: int) -> None:
        """The server closed (or refused) an agent's WebSocket with close ``code``."""
        self._socket_closes.labels(str(code)).inc()

    # -- exposition -----------------------------------------------------------------------------------------

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for (Prometheus text by default, else OpenMetrics):
        the body and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
