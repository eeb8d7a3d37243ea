"""The process manager: every attempt this agent holds, within its capacity, from dispatch to report.

``submit`` takes a dispatch and returns at once (a dispatch it holds or recently finished is ignored, so a
resend after a reconnect never runs twice); the attempt waits for its fire time and runs in its own task.
At most ``capacity`` attempts run at once; up to ``prefetch`` more may be held, dispatched ahead, and start
in arrival order as slots free, so the next process starts without a round trip to the server. Reports go
out in order per attempt (``running``, log chunks, final status); a slot is free before the final report.
``drain`` hands back what has not started (``lost``) and lets the rest finish up to a timeout. Starts and
directory removals run on worker threads; one sampling loop enforces the limits of every process tree.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from uuid import UUID

import msgspec

from hetuflow_agent.executor import environment
from hetuflow_agent.executor.scratch import DIR_MODE
from hetuflow_agent.process import orphans, sampler
from hetuflow_agent.process.errors import CapacityExceeded, NotAccepting
from hetuflow_agent.process.execution import Execution, LogCallback, Phase, UpdateCallback
from hetuflow_agent.process.settings import ProcessSettings
from hetuflow_agent.process.slots import RunSlots
from hetuflow_agent.process.spawner import DEFAULT_SPAWN_THREADS, Spawner
from hetuflow_agent.scheduler.clock import Clock
from hetuflow_agent.scheduler.timer import PreciseTimer
from hetuflow_core.enums import InstanceStatus
from hetuflow_core.protocol import RunningInstance, ScheduledTaskData

__all__ = ["ProcessManager"]

logger = logging.getLogger(__name__)

_NOT_STARTED: Final = "agent is shutting down; the task was handed back before it started"
_ABANDONED: Final = "agent shut down before the task finished"


class ProcessManager:
    """Runs dispatched attempts as process groups and reports on them.

    ``workdir`` is the agent's working directory (task directories go to ``workdir/tasks``);
    ``base_env`` is the environment every task starts from (default: this process's environment), less
    the agent's own settings and ``settings.task_env_exclude``;
    ``clock`` is the server clock estimate the connection layer keeps up to date; ``prefetch`` is how
    many attempts it holds beyond the ``capacity`` it runs; ``spawn_threads`` is how many starts may be
    in flight at once.
    """

    def __init__(
        self,
        *,
        capacity: int,
        workdir: str | os.PathLike[str],
        on_update: UpdateCallback,
        on_log: LogCallback,
        clock: Clock | None = None,
        settings: ProcessSettings | None = None,
        base_env: Mapping[str, str] | None = None,
        prefetch: int = 0,
        spawn_threads: int = DEFAULT_SPAWN_THREADS,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if prefetch < 0:
            raise ValueError("prefetch must be at least 0")
        self._capacity = capacity
        self._prefetch = prefetch
        self._slots = RunSlots(capacity)
        self._workdir = Path(workdir).absolute()
        self._on_update = on_update
        self._on_log = on_log
        self._timer = PreciseTimer(clock if clock is not None else Clock())
        self._settings = ProcessSettings() if settings is None else _checked(settings)
        self._spawner = Spawner(
            executables=self._settings.executables,
            base_env=environment.without_agent_settings(
                os.environ if base_env is None else base_env, self._settings.task_env_exclude
            ),
            workdir=self._workdir,
            slots=capacity,
            spares=0 if self._settings.keep_task_dirs else capacity + prefetch,
            threads=spawn_threads,
        )
        self._active: dict[UUID, Execution] = {}
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self._finished: OrderedDict[UUID, None] = OrderedDict()
        self._accepting = True
        self._sampling: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- state

    @property
    def capacity(self) -> int:
        """How many attempts run at once at most."""
        return self._capacity

    @property
    def prefetch(self) -> int:
        """How many attempts are held beyond ``capacity`` (dispatched ahead, waiting for a run slot)."""
        return self._prefetch

    @property
    def free_slots(self) -> int:
        """How many more dispatches ``submit`` takes now (0 while draining or closed)."""
        return self._capacity + self._prefetch - len(self._active) if self._accepting else 0

    @property
    def running_count(self) -> int:
        """Attempts holding a run slot now (starting or running); never above ``capacity``."""
        return self._slots.in_use

    @property
    def accepting(self) -> bool:
        """False once ``drain`` or ``close`` was called."""
        return self._accepting

    @property
    def clock(self) -> Clock:
        """The server clock estimate the timer fires on."""
        return self._timer.clock

    def running(self) -> list[RunningInstance]:
        """Every held attempt, for state sync and heartbeats: ``running`` or still ``dispatched``."""
        return [
            RunningInstance(
                instance_id=execution.instance_id,
                task_id=execution.task.task_id,
                status=InstanceStatus.RUNNING
                if execution.phase is Phase.RUNNING
                else InstanceStatus.DISPATCHED,
                started_at=execution.started_at,
            )
            for execution in self._active.values()
        ]

    def knows(self, instance_id: UUID) -> bool:
        """True when the instance is held or finished recently (a dispatch of it would be ignored)."""
        return instance_id in self._active or instance_id in self._finished

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> list[int]:
        """Prepare the working directory and kill groups a crashed predecessor left; returns their ids.

        Call once before registering (so the server's view and the machine agree). Optional in tests.
        """
        killed = await asyncio.to_thread(self._prepare_workdir)
        self._ensure_sampling()
        return killed

    async def submit(self, task: ScheduledTaskData) -> bool:
        """Take one dispatch; True when accepted, False when it is a duplicate (ignored).

        Raises ``NotAccepting`` while draining or closed and ``CapacityExceeded`` when every slot is taken.
        """
        if not self._accepting:
            raise NotAccepting()
        if self.knows(task.instance_id):
            logger.info("ignoring duplicate dispatch", extra={"instance_id": str(task.instance_id)})
            return False
        if len(self._active) >= self._capacity + self._prefetch:
            raise CapacityExceeded(self._capacity, self._prefetch)
        execution = Execution(
            task,
            settings=self._settings,
            spawner=self._spawner,
            slots=self._slots,
            timer=self._timer,
            on_update=self._on_update,
            on_log=self._on_log,
            on_finished=self._finished_execution,
        )
        self._active[task.instance_id] = execution
        self._tasks[task.instance_id] = asyncio.create_task(
            self._run(execution), name=f"hetuflow-instance-{task.instance_id}"
        )
        self._ensure_sampling()
        return True

    async def cancel(self, instance_id: UUID, reason: str = "cancelled") -> bool:
        """Stop an attempt with SIGTERM, grace, SIGKILL (a waiting one never starts); final ``cancelled``.

        False when the instance is unknown or already finished. Returns without waiting for the stop.
        """
        execution = self._active.get(instance_id)
        return execution is not None and execution.request_stop(
            InstanceStatus.CANCELLED, reason, immediate=False
        )

    async def kill(self, instance_id: UUID, reason: str = "killed") -> bool:
        """Like ``cancel`` but SIGKILL at once (also escalates a cancel in its grace period)."""
        execution = self._active.get(instance_id)
        return execution is not None and execution.request_stop(
            InstanceStatus.CANCELLED, reason, immediate=True
        )

    async def drain(self, timeout_secs: float) -> None:
        """Stop taking work, hand back waiting attempts, give running ones ``timeout_secs``, stop the rest.

        Returns when every attempt has sent its final report. Attempts stopped here end ``lost``.
        """
        self._accepting = False
        for execution in list(self._active.values()):
            if execution.phase is Phase.WAITING:
                execution.request_stop(InstanceStatus.LOST, _NOT_STARTED, immediate=False)
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=max(timeout_secs, 0.0))
        for execution in list(self._active.values()):
            execution.request_stop(InstanceStatus.LOST, _ABANDONED, immediate=False)
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def close(self) -> None:
        """Stop everything now (SIGTERM, grace, SIGKILL), wait for the final reports, stop sampling."""
        await self.drain(0.0)
        if self._sampling is not None:
            self._sampling.cancel()
            await asyncio.gather(self._sampling, return_exceptions=True)
            self._sampling = None
        await self._spawner.close()

    # ---------------------------------------------------------------- internals

    async def _run(self, execution: Execution) -> None:
        try:
            await execution.run()
            if not self._settings.keep_task_dirs:
                self._spawner.remove_task_dir(execution.task)
        finally:
            self._tasks.pop(execution.instance_id, None)

    def _finished_execution(self, execution: Execution) -> None:
        """Called by an attempt once its outcome is decided, just before its final report."""
        self._active.pop(execution.instance_id, None)
        self._finished[execution.instance_id] = None
        while len(self._finished) > self._settings.remember_finished:
            self._finished.popitem(last=False)

    def _prepare_workdir(self) -> list[int]:
        tasks_root = self._workdir / "tasks"
        tasks_root.mkdir(parents=True, exist_ok=True)
        tasks_root.chmod(DIR_MODE)  # other users of the host cannot even list the attempts' directories
        killed = orphans.reap_orphans(tasks_root, remove_dirs=not self._settings.keep_task_dirs)
        self._spawner.leaders.reset()
        return killed

    def _ensure_sampling(self) -> None:
        if self._sampling is None or self._sampling.done():
            self._sampling = asyncio.create_task(self._sample_loop(), name="hetuflow-process-sampler")

    async def _sample_loop(self) -> None:
        """Every ``sample_interval_secs``: measure all running trees in one pass, in a worker thread."""
        interval = self._settings.sample_interval_secs
        while True:
            await asyncio.sleep(interval)
            watched = {
                execution.pid: execution
                for execution in self._active.values()
                if execution.phase is Phase.RUNNING and execution.pid is not None
            }
            if not watched:
                continue
            try:
                usage = await asyncio.to_thread(sampler.sample_trees, list(watched))
            except Exception:
                logger.exception("process sampling failed")
                continue
            for pid, execution in watched.items():
                tree = usage.get(pid)
                if tree is not None:
                    execution.observe(tree)


def _checked(settings: ProcessSettings) -> ProcessSettings:
    """``settings`` with its declared bounds enforced (they are checked on decoding, not on construction).

    The bounds matter beyond taste: a log chunk or output tail above the protocol's limits would be
    refused by the server and resent forever.
    """
    try:
        return msgspec.convert(msgspec.to_builtins(settings), ProcessSettings)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid process settings: {exc}") from None
