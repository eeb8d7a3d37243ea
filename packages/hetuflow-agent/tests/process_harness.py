"""Test harness for the process manager: build dispatches, record reports, inspect processes.

Other agent test modules import from here (``from process_harness import …``). ``Reports`` plays
the connection layer: it records every update and log chunk in arrival order and lets a test await the
final report of an instance. Everything runs real subprocesses; the environment puts this virtualenv's
``bin`` first on PATH so ``python3`` and ``uv`` are the ones installed for the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import psutil

from hetuflow_agent.process import ProcessManager, ProcessSettings
from hetuflow_core.enums import CommandKind, LogStream
from hetuflow_core.job import JobConfig
from hetuflow_core.protocol import ScheduledTaskData, TaskInstanceUpdatedData, TaskLogChunkData

__all__ = ["TEST_ENV", "Reports", "open_manager", "pid_alive", "scheduled", "wait_gone"]

VENV_BIN = str(Path(sys.executable).parent)
TEST_ENV = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
"""The agent base environment of every test: this venv's python3 and uv come first."""

FINAL_TIMEOUT_SECS = 30.0


def scheduled(
    command: CommandKind | str = CommandKind.BASH,
    *,
    fire_in: float = 0.0,
    parameters: dict[str, Any] | None = None,
    attempt: int = 1,
    **config: Any,
) -> ScheduledTaskData:
    """A dispatch of a new instance firing ``fire_in`` seconds from now (server clock = local clock)."""
    now = datetime.now(UTC)
    return ScheduledTaskData(
        instance_id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        attempt=attempt,
        scheduled_at=now,
        fire_at=now + timedelta(seconds=fire_in),
        # Through msgspec so nested parts may be given as dicts and every constraint is checked.
        config=msgspec.convert({"command": CommandKind(command), **config}, JobConfig),
        parameters=parameters or {},
    )


class Reports:
    """The fake connection layer: records reports in arrival order."""

    def __init__(self) -> None:
        self.events: list[TaskInstanceUpdatedData | TaskLogChunkData] = []
        self._finals: dict[UUID, asyncio.Future[TaskInstanceUpdatedData]] = {}
        self._running: dict[UUID, asyncio.Future[TaskInstanceUpdatedData]] = {}
        self._arrived = asyncio.Event()

    async def on_update(self, update: TaskInstanceUpdatedData) -> None:
        self.events.append(update)
        self._arrived.set()
        waiters = self._finals if update.status.is_final else self._running
        future = self._future(waiters, update.instance_id)
        if not future.done():
            future.set_result(update)

    async def on_log(self, chunk: TaskLogChunkData) -> None:
        self.events.append(chunk)
        self._arrived.set()

    async def final(
        self, instance_id: UUID, within_secs: float = FINAL_TIMEOUT_SECS
    ) -> TaskInstanceUpdatedData:
        """The final report of ``instance_id`` (waits for it)."""
        return await asyncio.wait_for(asyncio.shield(self._future(self._finals, instance_id)), within_secs)

    async def started(
        self, instance_id: UUID, within_secs: float = FINAL_TIMEOUT_SECS
    ) -> TaskInstanceUpdatedData:
        """The ``running`` report of ``instance_id`` (waits for it)."""
        return await asyncio.wait_for(asyncio.shield(self._future(self._running, instance_id)), within_secs)

    async def until(self, condition: Callable[[], bool], within_secs: float = FINAL_TIMEOUT_SECS) -> None:
        """Wait until ``condition()`` holds; it is checked again after every report."""
        async with asyncio.timeout(within_secs):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()

    def updates(self, instance_id: UUID) -> list[TaskInstanceUpdatedData]:
        return [
            e for e in self.events if isinstance(e, TaskInstanceUpdatedData) and e.instance_id == instance_id
        ]

    def chunks(self, instance_id: UUID, stream: LogStream) -> list[TaskLogChunkData]:
        return [
            e
            for e in self.events
            if isinstance(e, TaskLogChunkData) and e.instance_id == instance_id and e.stream is stream
        ]

    def output(self, instance_id: UUID, stream: LogStream = LogStream.STDOUT) -> bytes:
        """The stream's bytes as the log chunks deliver them (in seq order)."""
        return b"".join(c.content for c in sorted(self.chunks(instance_id, stream), key=lambda c: c.seq))

    async def run(self, manager: ProcessManager, task: ScheduledTaskData) -> TaskInstanceUpdatedData:
        """Submit ``task`` and return its final report."""
        assert await manager.submit(task)
        return await self.final(task.instance_id)

    @staticmethod
    def _future(
        table: dict[UUID, asyncio.Future[TaskInstanceUpdatedData]], instance_id: UUID
    ) -> asyncio.Future[TaskInstanceUpdatedData]:
        if instance_id not in table:
            table[instance_id] = asyncio.get_running_loop().create_future()
        return table[instance_id]


@contextlib.asynccontextmanager
async def open_manager(
    workdir: Path,
    *,
    capacity: int = 4,
    prefetch: int = 0,
    base_env: Mapping[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[ProcessManager, Reports]]:
    """A started manager with a short kill grace, closed (everything stopped) on exit; tasks start from
    ``base_env`` (default ``TEST_ENV``)."""
    reports = Reports()
    settings.setdefault("kill_grace_secs", 0.5)
    manager = ProcessManager(
        capacity=capacity,
        prefetch=prefetch,
        workdir=workdir,
        on_update=reports.on_update,
        on_log=reports.on_log,
        settings=ProcessSettings(**settings),
        base_env=TEST_ENV if base_env is None else base_env,
    )
    await manager.start()
    try:
        yield manager, reports
    finally:
        await manager.close()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pid: int, within_secs: float = 5.0) -> bool:
    """Wait until ``pid`` is gone; False when it still runs after ``within_secs``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_secs
    while pid_alive(pid):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
