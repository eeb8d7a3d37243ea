"""The agent container: builds the parts from the configuration and starts and stops them in order.

Parts: the server ``Clock`` estimate, the ``ProcessManager`` (runs the tasks, fires them on the clock;
``capacity`` at once, and optionally ``prefetch`` more held ahead so a freed slot need not wait for the
server) and the ``Session`` (connection, registration, reports). The manager reports through the
session's callbacks; the session hands dispatches and commands to the manager.

Start: prepare the working directory (and kill what a crashed predecessor left), then start the
session task, so the first registration already tells the truth. Stop (SIGTERM, SIGINT, or the
server's ``shutdown`` command): take no new work (heartbeat ``draining``, zero credits), let running
tasks finish for ``drain_timeout_secs`` (then stop them; they are reported ``lost`` so the server
retries them), wait up to ``flush_timeout_secs`` for the server to ack the last reports, close the
connection cleanly, release the manager. A second stop request skips the rest of the drain.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import socket
from typing import Final

from hetuflow_agent.__about__ import __version__
from hetuflow_agent.config import AgentConfig
from hetuflow_agent.connection.session import Session
from hetuflow_agent.errors import ConfigError
from hetuflow_agent.executor.capabilities import DEFAULT_EXECUTABLES, detect_capabilities
from hetuflow_agent.process.manager import ProcessManager
from hetuflow_agent.process.settings import ProcessSettings
from hetuflow_agent.scheduler.clock import Clock
from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.protocol import TaskInstanceUpdatedData, TaskLogChunkData

__all__ = ["AgentApplication"]

logger = logging.getLogger(__name__)

_SESSION_CLOSE_SECS: Final = 5.0
"""How long the session may take to close its connection at shutdown before it is cancelled."""


class AgentApplication:
    """One agent process: ``await run()`` until ``request_stop()``; or ``start()``/``stop()`` yourself."""

    def __init__(self, config: AgentConfig, *, prefetch: int | None = None) -> None:
        """``prefetch`` (default: the config's ``window``): attempts held beyond the ``capacity`` running
        ones. Dispatched ahead, each starts the moment a process ends instead of a server round trip later
        (final report → credit → dispatch); for short tasks that round trip is most of a slot's time. The
        server caps the window at the capacity.
        """
        if prefetch is None:
            prefetch = config.window
        self.config = config
        self.clock = Clock()
        executables = {**DEFAULT_EXECUTABLES, **config.executables}
        self.process_manager = ProcessManager(
            capacity=config.capacity,
            prefetch=prefetch,
            workdir=config.workdir,
            on_update=self._on_update,
            on_log=self._on_log,
            clock=self.clock,
            settings=ProcessSettings(
                executables=executables,
                kill_grace_secs=config.kill_grace_secs,
                max_output_bytes=config.max_output_bytes,
                task_env_exclude=list(config.task_env_exclude),
            ),
        )
        self.capabilities = AgentCapabilities(
            commands=detect_capabilities(executables),
            capacity=config.capacity,
            version=__version__,
            os=platform.system().lower(),
            arch=platform.machine().lower(),
            hostname=socket.gethostname()[:255],
        )
        if prefetch:
            # Left out when 0, so a server that predates the field still accepts this agent.
            self.capabilities.prefetch = prefetch
        self.session = Session(
            config,
            capabilities=self.capabilities,
            runner=self.process_manager,
            clock=self.clock,
            on_shutdown=self.request_stop,
        )
        self._session_task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._stopped = False

    async def _on_update(self, data: TaskInstanceUpdatedData) -> None:
        await self.session.report_update(data)

    async def _on_log(self, data: TaskLogChunkData) -> None:
        await self.session.report_log(data)

    def request_stop(self) -> None:
        """Ask ``run`` to drain and return; a second call cuts the drain short (signal-handler safe)."""
        if self._stop_requested.is_set():
            logger.warning("second stop request: stopping running tasks now")
            self._force.set()
        self._stop_requested.set()

    async def start(self) -> None:
        """Prepare the working directory and connect (in the background) to the servers.

        Raises ``ConfigError`` when the working directory cannot be created or used.
        """
        try:
            killed = await self.process_manager.start()
        except OSError as exc:  # the one setting this touches on disk
            reason = exc.strerror or str(exc)
            raise ConfigError("workdir", f"cannot prepare {self.config.workdir}: {reason}") from exc
        if killed:
            logger.warning("killed %d process groups left by a previous run", len(killed))
        logger.info(
            "agent %s starting: capacity %d, commands %s, servers %s",
            self.config.id,
            self.config.capacity,
            ",".join(self.capabilities.commands) or "none",
            ", ".join(self.config.servers),
            extra={"agent_id": self.config.id},
        )
        self._session_task = asyncio.create_task(self.session.run(), name="hetuflow-agent.session")

    async def stop(self) -> None:
        """Drain, flush the reports, close the connection, release the process manager (once)."""
        if self._stopped:
            return
        self._stopped = True
        cfg = self.config
        self.session.start_drain()
        running = len(self.process_manager.running())
        logger.info("stopping: %d tasks held, waiting up to %g s", running, cfg.drain_timeout_secs)
        drain = asyncio.create_task(
            self.process_manager.drain(cfg.drain_timeout_secs), name="hetuflow-agent.drain"
        )
        force = asyncio.create_task(self._force.wait(), name="hetuflow-agent.force-stop")
        await asyncio.wait([drain, force], return_when=asyncio.FIRST_COMPLETED)
        force.cancel()
        if not drain.done():
            await self.process_manager.drain(0.0)  # stop what still runs; its reports follow
        await drain
        if not await self.session.flush(cfg.flush_timeout_secs):
            logger.warning("%d reports not acknowledged by the server at exit", len(self.session.outbox))
        self.session.stop()
        if self._session_task is not None:
            try:
                await asyncio.wait_for(self._session_task, _SESSION_CLOSE_SECS)
            except TimeoutError:
                logger.warning("connection did not close in time")
        await self.process_manager.close()
        logger.info("agent %s stopped", cfg.id, extra={"agent_id": cfg.id})

    async def run(self) -> None:
        """Start (unless started already), wait for ``request_stop`` (or the session ending), then stop."""
        if self._session_task is None:
            await self.start()
        assert self._session_task is not None
        waiter = asyncio.create_task(self._stop_requested.wait(), name="hetuflow-agent.wait-stop")
        try:
            await asyncio.wait([waiter, self._session_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            await self.stop()
