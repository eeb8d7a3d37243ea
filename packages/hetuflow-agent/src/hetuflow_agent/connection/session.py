"""The session: one agent's lasting relationship with the servers, across any number of connections.

``Session.run`` tries the configured server URLs in turn and never gives up: after any end of a connection
it waits an exponential backoff with full jitter (reset by a connection that stayed registered for
``backoff_reset_secs``). Each connection registers with the state sync, applies the server's answer, replays
the outbox in order, announces free slots and then serves with five named tasks (reader, writer, heartbeat,
credits and a watchdog for a silent server); the first of them to fail ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from hetuflow_agent.connection import registration
from hetuflow_agent.connection.backoff import Backoff
from hetuflow_agent.connection.channel import Channel, SessionStats
from hetuflow_agent.connection.inbound import InboundHandler
from hetuflow_agent.connection.metrics import host_metrics
from hetuflow_agent.connection.msgid import next_message_id
from hetuflow_agent.connection.outbox import Outbox
from hetuflow_agent.connection.runner import TaskRunner
from hetuflow_agent.connection.url import ServerUrl, make_ssl_context, parse_server_url
from hetuflow_agent.connection.websocket import CLOSE_GOING_AWAY, connect
from hetuflow_agent.errors import ConnectionLost, HandshakeRejected, RegistrationRejected, WebSocketError
from hetuflow_agent.scheduler.clock import Clock
from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import AgentStatus
from hetuflow_core.ids import now_ms
from hetuflow_core.protocol import (
    AcquireTaskData,
    AcquireTaskRequest,
    AgentRegisterData,
    AgentRegisterRequest,
    HeartbeatData,
    HeartbeatRequest,
    RegisterResponseData,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    TaskLogChunk,
    TaskLogChunkData,
)

if TYPE_CHECKING:  # config imports connection.url; a runtime import here would be circular
    from hetuflow_agent.config import AgentConfig

__all__ = ["Session"]

logger = logging.getLogger(__name__)

_CREDITS_COALESCE_SECS: Final = 0.002
"""Slots freed within this window are announced in one ``AcquireTaskRequest``. Short: the server's
dispatcher batches announcements by itself (it claims for all of them in its next round), and the
agent holds work ahead of its free run slots, so the window only merges exits that come together."""
_WATCHDOG_TICK_SECS: Final = 0.5
"""How often the watchdog checks for a silent server."""


class Session:
    """Keeps this agent connected, registered and reporting, until ``stop``.

    ``report_update`` and ``report_log`` are the runner's callbacks: they queue the frame in the outbox
    and return at once, connected or not.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        capabilities: AgentCapabilities,
        runner: TaskRunner,
        clock: Clock,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._urls: list[ServerUrl] = [parse_server_url(url) for url in config.servers]
        self._ssl: ssl.SSLContext | None = None
        if any(url.secure for url in self._urls):
            self._ssl = make_ssl_context(config.tls_ca_file, config.tls_insecure)
        self._capabilities = capabilities
        self._runner = runner
        self._clock = clock
        self._on_shutdown = on_shutdown
        self.outbox = Outbox(config.outbox_max_bytes)
        self.labels: dict[str, str] = dict(config.labels)
        self._draining = False
        self._inbound = InboundHandler(runner, self.outbox, clock, self)
        self._stop = asyncio.Event()
        self._registered = asyncio.Event()
        self._credits_due = asyncio.Event()
        self._heartbeat_due = asyncio.Event()
        # Held while a server frame is applied and acked, and while credits are counted and sent, so a
        # credit announcement counts exactly the dispatches acked before it (the server relies on that).
        self._apply_lock = asyncio.Lock()
        self._heartbeat_interval_secs = 5.0
        self._silence_limit_secs = 15.0
        self._registered_at: float | None = None
        self.server_url: str | None = None
        """URL of the server this agent is registered with right now, if any."""
        self.stats = SessionStats()

    # ------------------------------------------------------------------ state the rest of the agent reads

    @property
    def draining(self) -> bool:
        """True once the agent stopped taking work (SIGTERM or a ``drain`` command)."""
        return self._draining

    @property
    def registered(self) -> bool:
        """True while a connection is up and registered."""
        return self._registered.is_set()

    @property
    def connections(self) -> int:
        """Connections that completed registration, since start."""
        return self.stats.connections

    @property
    def bad_frames(self) -> int:
        """Server messages refused (each answered with an ``error`` frame), since start."""
        return self.stats.bad_frames

    @property
    def duplicates(self) -> int:
        """Dispatches and commands received again and not applied again."""
        return self._inbound.duplicates

    async def wait_registered(self, timeout_secs: float) -> bool:
        """Wait until registered; False when ``timeout_secs`` passed first."""
        try:
            async with asyncio.timeout(timeout_secs):
                await self._registered.wait()
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ the runner's callbacks

    async def report_update(self, data: TaskInstanceUpdatedData) -> None:
        """Queue a status report; a final one frees a slot, which is announced as a credit."""
        self.outbox.put(TaskInstanceUpdated(data=data, id=next_message_id()))
        if data.status.is_final:
            self._credits_due.set()

    async def report_log(self, data: TaskLogChunkData) -> None:
        """Queue a log chunk."""
        self.outbox.put(TaskLogChunk(data=data, id=next_message_id()))

    # ------------------------------------------------------------------ control (also used by commands)

    def start_drain(self) -> None:
        """Take no more work: the next heartbeat says ``draining`` and zero credits are announced now."""
        if not self._draining:
            logger.info("draining: no new work will be taken")
        self._draining = True
        self._heartbeat_due.set()
        self._credits_due.set()

    def request_shutdown(self) -> None:
        """Ask the application to drain and exit (the server's ``shutdown`` command)."""
        if self._on_shutdown is not None:
            self._on_shutdown()
        else:
            self.start_drain()

    def set_labels(self, labels: dict[str, str]) -> None:
        """Replace the routing labels; they are sent at every registration from now on."""
        self.labels = labels

    async def flush(self, timeout_secs: float) -> bool:
        """Wait until the server acked every queued report; False when ``timeout_secs`` passed first."""
        return await self.outbox.wait_empty(timeout_secs)

    def stop(self) -> None:
        """End ``run``: the current connection is closed cleanly and no new one is opened."""
        self._stop.set()

    # ------------------------------------------------------------------ connection lifecycle

    async def run(self) -> None:
        """Connect, register and serve; reconnect after every end of a connection, until ``stop``."""
        loop = asyncio.get_running_loop()
        cfg = self._config
        backoff = Backoff(cfg.backoff_initial_secs, cfg.backoff_max_secs)
        attempt = 0
        while not self._stop.is_set():
            url = self._urls[attempt % len(self._urls)]
            attempt += 1  # every end of a connection moves on to the next URL (failover)
            self._registered_at = None
            retry_after = 0.0
            try:
                await self._connection(url)
            except HandshakeRejected as exc:
                retry_after = exc.retry_after_secs  # a busy server says when to come back
                level = logging.ERROR if exc.status in (401, 403) else logging.WARNING
                logger.log(level, "%s", exc, extra={"server": url.url, "status": exc.status})
            except RegistrationRejected as exc:
                logger.error("%s", exc, extra={"server": url.url})
            except WebSocketError as exc:
                logger.warning("%s", exc, extra={"server": url.url})
            except Exception:  # a bug in one connection must not end the agent: log, reconnect
                logger.exception("connection to %s failed unexpectedly", url, extra={"server": url.url})
            if self._stop.is_set():
                break
            if self._was_healthy(loop.time()):
                backoff.reset()
            delay = backoff.next_delay(retry_after)
            upcoming = self._urls[attempt % len(self._urls)]
            logger.info("reconnecting to %s in %.2f s", upcoming, delay, extra={"server": upcoming.url})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    def _was_healthy(self, now: float) -> bool:
        """True when the connection that just ended stayed registered for ``backoff_reset_secs``."""
        up_since = self._registered_at
        return up_since is not None and now - up_since >= self._config.backoff_reset_secs

    async def _connection(self, url: ServerUrl) -> None:
        """One connection's life: upgrade, register, serve until it fails (raise) or ``stop`` (return)."""
        cfg = self._config
        ws = await connect(
            url,
            cfg.token,
            agent_id=cfg.id,
            ssl_context=self._ssl,
            timeout_secs=cfg.connect_timeout_secs,
            max_message_bytes=cfg.max_message_bytes,
        )
        channel = Channel(ws, max_message_bytes=cfg.max_message_bytes, stats=self.stats)
        try:
            request = self._register_request()
            response = await registration.register(channel, request, cfg.connect_timeout_secs)
            await self._apply_registration(url, request, response)
            self._registered_at = asyncio.get_running_loop().time()
            self.server_url = url.url
            self.stats.connections += 1
            self._registered.set()
            self.outbox.rewind()
            self._credits_due.set()  # announce free slots on every new connection
            await self._serve(channel)
            await ws.close(CLOSE_GOING_AWAY, "agent shutting down")
        finally:
            self._registered.clear()
            self.server_url = None
            ws.abort()

    def _register_request(self) -> AgentRegisterRequest:
        running = registration.state_sync(self._runner.running(), self.outbox.finished_instances())
        data = AgentRegisterData(
            agent_id=self._config.id,
            name=self._config.display_name,
            labels=dict(self.labels),
            capabilities=self._capabilities,
            running=running,
        )
        return AgentRegisterRequest(data=data)

    async def _apply_registration(
        self, url: ServerUrl, request: AgentRegisterRequest, data: RegisterResponseData
    ) -> None:
        """Clock sample, heartbeat timing and the kill list of an accepted registration."""
        if data.server_time_ms:
            self._clock.observe(server_time_ms=data.server_time_ms, sent_ms=request.ts)
        interval = data.heartbeat_interval_secs
        if self._config.heartbeat_interval_secs is not None:
            interval = min(interval, self._config.heartbeat_interval_secs)
        self._heartbeat_interval_secs = interval
        # A silent server is given up after half its agent timeout: the other half is left to register
        # with another server before the leader, counting the same silence, declares this agent's running
        # attempts lost (a frozen or cut-off server would otherwise cost every task running here). Never so
        # tightly that one slow heartbeat round trip would end a healthy connection.
        self._silence_limit_secs = max(data.agent_timeout_secs / 2, 2.0 * interval)
        for instance_id in data.kill:
            logger.info("server does not know instance %s any more: killing it", instance_id)
            await self._runner.kill(instance_id)
        logger.info(
            "registered with %s (clock offset %+.3f s, %d kept, %d killed)",
            url,
            self._clock.offset_secs,
            len(data.keep),
            len(data.kill),
            extra={"server": url.url, "server_id": str(data.server_id)},
        )

    async def _serve(self, channel: Channel) -> None:
        """Run the connection's tasks until one fails (raise it) or ``stop`` is called (return)."""
        loops: dict[str, Coroutine[Any, Any, None]] = {
            "reader": self._read_loop(channel),
            "writer": self._write_loop(channel),
            "heartbeat": self._heartbeat_loop(channel),
            "credits": self._credits_loop(channel),
            "watchdog": self._watchdog_loop(channel),
        }
        tasks = [
            asyncio.create_task(coro, name=f"hetuflow-agent.session.{name}") for name, coro in loops.items()
        ]
        stop = asyncio.create_task(self._stop.wait(), name="hetuflow-agent.session.stop")
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, stop]:
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
        for task in tasks:
            if task in done and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if stop not in done:
            raise ConnectionLost(channel.url.url, f"{channel.url}: a connection task ended unexpectedly")

    # ------------------------------------------------------------------ the connection's tasks

    async def _read_loop(self, channel: Channel) -> None:
        while True:
            message = await channel.receive()
            if message is None:
                continue
            async with self._apply_lock:
                reply = await self._inbound.handle(message, now_ms())
                if reply is not None:
                    await channel.send(reply)

    async def _write_loop(self, channel: Channel) -> None:
        while True:
            entry = await self.outbox.next_unsent()
            await channel.ws.send(entry.raw)

    async def _heartbeat_loop(self, channel: Channel) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_interval_secs):
                    await self._heartbeat_due.wait()
            self._heartbeat_due.clear()
            running = [item.instance_id for item in self._runner.running()]
            free = 0 if self._draining else self._runner.free_slots
            data = HeartbeatData(
                status=AgentStatus.DRAINING if self._draining else AgentStatus.ONLINE,
                metrics=host_metrics(len(running), free),
                running=running,
            )
            await channel.send(HeartbeatRequest(data=data, id=next_message_id()))

    async def _credits_loop(self, channel: Channel) -> None:
        while True:
            await self._credits_due.wait()
            await asyncio.sleep(_CREDITS_COALESCE_SECS)  # let the runner release the slot; batch bursts
            self._credits_due.clear()
            async with self._apply_lock:
                free = 0 if self._draining else self._runner.free_slots
                await channel.send(
                    AcquireTaskRequest(data=AcquireTaskData(free_slots=free), id=next_message_id())
                )

    async def _watchdog_loop(self, channel: Channel) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_WATCHDOG_TICK_SECS)
            silent = loop.time() - channel.last_received
            if silent > self._silence_limit_secs:
                raise ConnectionLost(channel.url.url, f"{channel.url}: server silent for {silent:.1f} s")
