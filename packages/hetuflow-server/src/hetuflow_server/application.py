"""The application container: everything one server process owns, opened and closed in one fixed order.

``ServerApplication(config)`` holds the database (``ModelManager``, on the embedded PostgreSQL when no URL is
configured), the services, the token service, this server's row in ``sched_server``, the background
loops and the Prometheus metrics (``metrics``, served at ``/metrics``). `create_app` wraps it in a Starlette
app whose lifespan starts and stops it; ``app.state.hetuflow`` is the container, which is how endpoints reach
the services (see ``endpoint.api.wiring``).

Startup order: key → embedded PostgreSQL → migrations → pool → services and tokens → server row → loops.
Shutdown runs the same steps backwards; a failure while starting undoes what was already started.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import AsyncIterator
from typing import TypeVar
from uuid import UUID

from starlette.applications import Starlette
from starlette.middleware import Middleware

from hetuflow_core.ids import uuid7
from hetuflow_server import broker, endpoint, metrics, notifier, retention
from hetuflow_server.auth.keys import load_or_create_key
from hetuflow_server.auth.service import TokenService
from hetuflow_server.auth.tokens import TokenCodec
from hetuflow_server.config import ServerConfig, redact_url
from hetuflow_server.embedded import EmbeddedPostgres
from hetuflow_server.endpoint.api import exception_handlers
from hetuflow_server.endpoint.keepalive import DrainRequestBody
from hetuflow_server.errors import HetuflowError
from hetuflow_server.infra import ModelManager, bmc, migrate, notify, pending_migrations
from hetuflow_server.loops import BackgroundLoops, every
from hetuflow_server.scheduler import daemon, leader
from hetuflow_server.service import Services

__all__ = ["ServerApplication", "State", "build_app", "create_app"]

logger = logging.getLogger(__name__)

READINESS_TIMEOUT_SECS = 5.0
"""How long ``/readyz`` waits for the database before calling the server not ready."""

MIN_TOKEN_RECHECK_SECS = 1.0
"""Live connections' tokens are checked against their records every ``auth.revocation_cache_secs``, and
never more often than this (a cache of 0 s would otherwise query without a pause)."""

_T = TypeVar("_T")

_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})


class State(enum.Enum):
    """Where a container is in its life."""

    NEW = "new"
    OPEN = "open"  # database, services and tokens usable; no server row, no loops (CLI commands)
    STARTED = "started"  # serving: server row registered, loops running
    STOPPED = "stopped"


class ServerApplication:
    """One server process: configuration, database, services, tokens, server row and background loops."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.server_id: UUID = uuid7()
        self.loops = BackgroundLoops()
        self.state = State.NEW
        self.draining = asyncio.Event()
        """Set when shutdown begins: long-lived connections (agents, log tails) should wind down."""
        self.applied_migrations: list[str] = []
        self.metrics = metrics.ServerMetrics(server_id=self.server_id, server_name=config.server.name)
        """This application's Prometheus metrics (a registry of its own)."""
        self._embedded: EmbeddedPostgres | None = None
        self._db: ModelManager | None = None
        self._services: Services | None = None
        self._tokens: TokenService | None = None
        self.leadership: leader.Leadership | None = None
        """This server's hold on the leader lease while serving (``is_leader``, ``tenure``, ``fence`` for
        singleton work)."""
        self._broker: broker.Broker | None = None
        self.generator: metrics.ObservedGenerator | None = None
        """The task generator while serving (it works while this server leads)."""
        self.listener: notify.Listener | None = None
        """This server's LISTEN connection while serving: the broker and the leader's loops listen on it."""

    # -- what the rest of the server uses -------------------------------------------------------------------

    @property
    def db(self) -> ModelManager:
        """The connection pool (only while open)."""
        return _require(self._db, "database")

    @property
    def services(self) -> Services:
        """The service layer (only while open)."""
        return _require(self._services, "services")

    @property
    def tokens(self) -> TokenService:
        """The token service (only while open)."""
        return _require(self._tokens, "token service")

    @property
    def broker(self) -> broker.Broker:
        """The agent gateway, dispatcher and liveness (only while serving)."""
        return _require(self._broker, "broker")

    @property
    def address(self) -> str:
        """The base URL this server announces in ``sched_server`` (what agents and operators connect to)."""
        server = self.config.server
        host = socket.gethostname() if server.host in _ANY_ADDRESS else server.host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if server.tls_cert is not None else "http"
        return f"{scheme}://{host}:{server.port}"

    # -- life cycle -----------------------------------------------------------------------------------------

    async def open(self, *, apply_migrations: bool = True, load_key: bool = True) -> None:
        """Make the database, services and tokens usable (what CLI commands need); no loops, no server row.

        With ``apply_migrations`` pending migrations are applied first (under their advisory lock). With
        ``load_key`` the server key is loaded (generated if absent) and `tokens` becomes available.
        """
        if self.state is not State.NEW:
            raise RuntimeError(f"cannot open a {self.state.value} application")
        try:
            # The key first: a bad key file is a local mistake, reported before any database work.
            codec = TokenCodec(load_or_create_key(self.config.key_path)[0]) if load_key else None
            conninfo = await self._database_url()
            if apply_migrations:
                self.applied_migrations = await migrate(conninfo)
            database = self.config.database
            self._db = ModelManager(
                conninfo,
                min_size=database.pool_min,
                max_size=database.pool_max,
                timeout_secs=database.connect_timeout_secs,
                name=f"hetuflow-{self.config.server.name}",
                # A server stuck inside a transaction for a whole lease is as good as dead to the others: the
                # database ends its session: its locks (the lease row among them) do not outlive the lease.
                idle_in_transaction_timeout_secs=self.config.scheduler.lease_secs,
            )
            await self._db.open(timeout_secs=database.connect_timeout_secs)
            self._services = Services(
                self._db,
                server_id=self.server_id,
                observer=self.metrics,
                misfire_slack_secs=self.config.scheduler.misfire_slack_secs,
                log_quota=bmc.LogQuota(
                    max_bytes=self.config.retention.attempt_log_max_bytes,
                    grace_secs=self.config.retention.late_log_grace_secs,
                ),
                notification_targets=frozenset(self.config.notifications.targets),
            )
            self.metrics.track(pool=self._db.pool)
            if codec is not None:
                self._tokens = TokenService(
                    self._services.tokens, codec, cache_secs=self.config.auth.revocation_cache_secs
                )
        except BaseException:
            await self._close()
            raise
        self.state = State.OPEN

    async def start(self) -> None:
        """Open, register this server and start the background loops (what ``serve`` needs)."""
        await self.open()
        try:
            await self.services.servers.register(
                self.server_id, name=self.config.server.name, address=self.address
            )
            await self._mark_up()  # before the first dispatch judges a slot by it
            self._register_loops()
            self.loops.start()
        except BaseException:
            await self.stop()
            raise
        self.state = State.STARTED
        logger.info(
            "server %s (%s) started as %s",
            self.config.server.name,
            self.address,
            self.server_id,
            extra={"server_id": str(self.server_id)},
        )

    async def stop(self) -> None:
        """Stop the loops, mark this server inactive, close the pool, release the embedded PostgreSQL."""
        if self.state is State.STOPPED:
            return
        self.draining.set()
        await self.loops.stop()
        if self.state is State.STARTED or self.loops.names:
            await self._deactivate()
        await self._close()
        self.state = State.STOPPED

    @contextlib.asynccontextmanager
    async def opened(
        self, *, apply_migrations: bool = True, load_key: bool = True
    ) -> AsyncIterator[ServerApplication]:
        """``open`` for the duration of a block, then ``stop`` (CLI commands)."""
        await self.open(apply_migrations=apply_migrations, load_key=load_key)
        try:
            yield self
        finally:
            await self.stop()

    async def readiness(self) -> list[str]:
        """Why the server is not ready to take traffic (empty when ready): database, migrations, shutdown."""
        if self.draining.is_set():
            return ["server is shutting down"]
        if self.state is not State.STARTED:
            return [f"server is not started (state {self.state.value})"]
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECS), self.db.transaction() as conn:
                pending = await pending_migrations(conn)
        except TimeoutError:
            return [f"database did not answer within {READINESS_TIMEOUT_SECS:g} s"]
        except HetuflowError as exc:
            return [f"database: {exc.detail}"]
        if pending:
            return [f"database migrations pending: {', '.join(pending)}"]
        return []

    # -- internals ------------------------------------------------------------------------------------------

    def _register_loops(self) -> None:
        # Fixed order: loops start in this order and stop in the reverse one.
        self.loops.add(
            "server-heartbeat",
            every(self.config.scheduler.heartbeat_interval_secs, self._heartbeat, name="server-heartbeat"),
        )
        # The leader lease is taken before and given up after every loop that does singleton work.
        self.leadership = leader.Leadership(
            self.db, self.server_id, lease_secs=self.config.scheduler.lease_secs
        )
        self.loops.add("scheduler-leader", self.leadership.loop())
        leadership = self.leadership
        # One LISTEN connection per server; everything that reacts to other servers' changes subscribes to it.
        listener = self.listener = notify.Listener(self.db.conninfo, name="hetuflow:notify-listener")
        self.loops.add("notify-listener", listener.run)
        # Revocations made anywhere end this server's connections of the token at once; the periodic check
        # covers notifications lost while the listener reconnects, and tokens expiring while connected.
        listener.subscribe(notify.TOKEN_CHANNEL, self.tokens.on_revoked)
        listener.add_connect_hook(self.tokens.on_reconnected)
        recheck_secs = max(self.config.auth.revocation_cache_secs, MIN_TOKEN_RECHECK_SECS)
        self.loops.add("token-recheck", every(recheck_secs, self.tokens.recheck, name="token-recheck"))
        self._broker = broker.Broker(
            self.services,
            server_id=self.server_id,
            listener=listener,
            settings=broker.BrokerSettings.from_config(self.config.scheduler),
            draining=self.draining,
            is_leader=lambda: leadership.is_leader,  # the reaper of silent agents is singleton work
        )
        scheduler = self.config.scheduler
        tasks = self.generator = metrics.ObservedGenerator(
            self.metrics,
            self.db,
            self.leadership,
            horizon_secs=scheduler.generation_horizon_secs,
            interval_secs=scheduler.generation_interval_secs,
            misfire_slack_secs=scheduler.misfire_slack_secs,
        )
        listener.subscribe(notify.SCHEDULE_CHANNEL, tasks.on_notify)
        # A daemon run ends with a report (work channel); schedules and jobs change (schedule channel).
        daemons = daemon.DaemonSupervisor(self.db, self.leadership)
        listener.subscribe(notify.WORK_CHANNEL, daemons.on_notify)
        listener.subscribe(notify.SCHEDULE_CHANNEL, daemons.on_notify)
        for name, factory in self._broker.loops():
            self.loops.add(name, factory)
        self.loops.add("scheduler-generator", tasks.loop())
        self.loops.add("scheduler-daemons", daemons.loop())
        aged = retention.Retention(
            self.db,
            self.leadership,
            self.config.retention,
            heartbeat_interval_secs=self.config.scheduler.heartbeat_interval_secs,
            metrics=self.metrics,
        )
        self.loops.add("retention", aged.loop())
        # Every server delivers notifications: the outbox's row locks keep them from sending one twice.
        notifications = notifier.Notifier(self.db, self.config.notifications)
        listener.subscribe(notify.NOTIFICATION_CHANNEL, notifications.on_notify)
        listener.add_connect_hook(lambda: notifications.on_notify(""))
        self.loops.add("notifier", notifications.loop())
        self.metrics.track(broker=self._broker, leadership=self.leadership)

    async def _heartbeat(self) -> None:
        await self.services.servers.heartbeat(self.server_id)
        await self._mark_up()

    async def _mark_up(self) -> None:
        # Every server says the scheduler is up with each heartbeat; the silence that marks a server inactive
        # (a few missed heartbeats) marks the scheduler down, so slots that came due meanwhile count as missed
        # in an outage rather than as waiting for an agent.
        gap_secs = self.config.scheduler.heartbeat_interval_secs * retention.STALE_SERVER_HEARTBEATS
        await self.services.servers.mark_up(gap_secs=gap_secs)

    async def _database_url(self) -> str:
        url = self.config.database.url
        if url is not None:
            logger.info("using database %s", redact_url(url))
            return url
        self._embedded = EmbeddedPostgres(self.config.embedded_pg_dir)
        return await asyncio.to_thread(self._embedded.start)

    async def _deactivate(self) -> None:
        if self._services is None:
            return
        try:
            await self._services.servers.deactivate(self.server_id)
        except HetuflowError as exc:
            logger.warning("could not mark server %s inactive: %s", self.server_id, exc.detail)

    async def _close(self) -> None:
        self._tokens = None
        self._services = None
        db, self._db = self._db, None
        if db is not None:
            await db.close()
        embedded, self._embedded = self._embedded, None
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def build_app(application: ServerApplication) -> Starlette:
    """The Starlette app serving ``application``.

    Its lifespan starts the container unless it is already started (``serve`` starts it first, to report
    startup errors plainly) and then stops it on shutdown.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = application.state is State.NEW
        if owned:
            await application.start()
        try:
            yield
        finally:
            if owned:
                await application.stop()

    app = Starlette(
        routes=endpoint.routes(),
        # Metrics outermost, so a request's time includes every other middleware.
        middleware=[
            Middleware(metrics.MetricsMiddleware, metrics=application.metrics),
            Middleware(DrainRequestBody),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.hetuflow = application
    return app


def create_app(config: ServerConfig) -> Starlette:
    """A Starlette app for ``config`` whose lifespan opens and closes a new `ServerApplication`."""
    return build_app(ServerApplication(config))


def _require(value: _T | None, what: str) -> _T:
    if value is None:
        raise RuntimeError(f"the {what} is only available while the application is open")
    return value
