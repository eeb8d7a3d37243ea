"""One attempt of one task, from the wait for its fire time to its final report.

An ``Execution`` waits on the precise timer (an attempt due later has the spawner make its task directory
and script meanwhile, so its fire time costs only the start of the process), then for a run slot (the agent
may hold more attempts than it runs at once), has the spawner start the process group off the event loop,
feeds its pipes into log chunks and enforces its limits, then reports. Reports leave in a fixed order:
``running`` (when the process really started), the log chunks of each stream in sequence (through one
sender task), and the final status last, after every chunk. Stops are requests (``request_stop``) from
cancel, kill, drain, the timeout and the limit checks; the first one decides the final status, a later
``kill`` can only make it harsher (SIGKILL at once instead of SIGTERM, grace, SIGKILL).

Thousands of attempts a minute each go through this, so the common path avoids event-loop work it does
not need: an attempt already due and a slot already free go straight to the start, waits are one
future woken by callbacks (``_wait_any``) rather than helper tasks, and the log sender task is only
created once there is output.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final, NamedTuple
from uuid import UUID

from hetuflow_agent.executor import launch as launching
from hetuflow_agent.process import child
from hetuflow_agent.process.output import OutputBuffer
from hetuflow_agent.process.pipes import LogPump
from hetuflow_agent.process.sampler import TreeUsage
from hetuflow_agent.process.settings import ProcessSettings
from hetuflow_agent.process.slots import RunSlots
from hetuflow_agent.process.spawner import Spawner
from hetuflow_agent.scheduler.timer import PreciseTimer
from hetuflow_core.enums import InstanceStatus
from hetuflow_core.protocol import ScheduledTaskData, TaskInstanceUpdatedData, TaskLogChunkData
from hetuflow_core.task import InstanceMetrics

__all__ = ["PREPARE_AHEAD_SECS", "Execution", "LogCallback", "Phase", "UpdateCallback"]

logger = logging.getLogger(__name__)

UpdateCallback = Callable[[TaskInstanceUpdatedData], Awaitable[None]]
LogCallback = Callable[[TaskLogChunkData], Awaitable[None]]

PREPARE_AHEAD_SECS: Final = 0.01
"""An attempt due later than this has its task directory and script made while it waits for its fire time."""
_MIB: Final = 1024 * 1024
_MAX_ERROR_CHARS: Final = 4096
"""Errors are one line for people; the protocol refuses more than 64 Ki characters."""


class Phase(enum.Enum):
    """Where an attempt is in its life."""

    WAITING = "waiting"
    """Accepted, waiting for its fire time or for a run slot."""
    STARTING = "starting"
    """Holds a slot; its process is being started (a stop now is applied once it runs)."""
    RUNNING = "running"
    """Its process was started."""
    FINISHED = "finished"
    """Its final status is decided; only reporting and cleanup remain."""


class _Stop(NamedTuple):
    status: InstanceStatus
    error: str
    immediate: bool


class Execution:
    """The life of one dispatched attempt. Create it, then await ``run`` once (in its own task)."""

    def __init__(
        self,
        task: ScheduledTaskData,
        *,
        settings: ProcessSettings,
        spawner: Spawner,
        slots: RunSlots,
        timer: PreciseTimer,
        on_update: UpdateCallback,
        on_log: LogCallback,
        on_finished: Callable[[Execution], None],
    ) -> None:
        self.task = task
        self.phase = Phase.WAITING
        self.pid: int | None = None
        self.started_at: datetime | None = None
        self._settings = settings
        self._spawner = spawner
        self._slots = slots
        self._slot: int | None = None
        """The run slot held (from the start until the outcome is decided)."""
        self._timer = timer
        self._on_update = on_update
        self._on_log = on_log
        self._on_finished = on_finished
        self._stop: _Stop | None = None
        self._exited = False
        self._waiter: asyncio.Future[None] | None = None
        self._next_seq = 0
        self._peak_rss = 0
        self._peak_cpu = 0.0

    @property
    def instance_id(self) -> UUID:
        """The attempt's id (the fencing token of this dispatch)."""
        return self.task.instance_id

    def request_stop(self, status: InstanceStatus, error: str, *, immediate: bool) -> bool:
        """Ask the attempt to end with ``status``; False when its outcome is already decided.

        Not ``immediate``: SIGTERM to the group, ``kill_grace_secs``, then SIGKILL. ``immediate``:
        SIGKILL at once. A waiting attempt simply never starts.
        """
        if self.phase is Phase.FINISHED or self._exited:
            return False  # the process ended on its own; that outcome stands
        if self._stop is None:
            self._stop = _Stop(status, error, immediate)
        elif immediate and not self._stop.immediate:
            self._stop = self._stop._replace(immediate=True)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return True

    def observe(self, usage: TreeUsage) -> None:
        """Take one sample of the process tree: keep the peaks and enforce the memory and CPU limits."""
        if self.phase is not Phase.RUNNING:
            return
        self._peak_rss = max(self._peak_rss, usage.rss_bytes)
        self._peak_cpu = max(self._peak_cpu, usage.cpu_secs)
        limits = self.task.config.limits
        if limits.memory_mb is not None and usage.rss_bytes > limits.memory_mb * _MIB:
            self.request_stop(
                InstanceStatus.FAILED,
                f"memory limit exceeded: the process tree used {usage.rss_bytes / _MIB:.1f} MiB "
                f"({usage.processes} processes), limit {limits.memory_mb} MiB",
                immediate=True,
            )
        elif limits.cpu_secs is not None and usage.cpu_secs > limits.cpu_secs:
            self.request_stop(
                InstanceStatus.FAILED,
                f"cpu limit exceeded: the process tree used {usage.cpu_secs:.1f} s of CPU time, "
                f"limit {limits.cpu_secs} s",
                immediate=True,
            )

    async def run(self) -> None:
        """Wait, run, report. Never raises (but ``CancelledError``): problems become a failed report."""
        try:
            final = await self._run()
        except Exception as exc:
            # The one boundary of an attempt: whatever went wrong inside the agent is reported as this
            # attempt's failure, and the agent goes on with its other work.
            logger.exception("attempt failed inside the agent", extra={"instance_id": str(self.instance_id)})
            final = self._final(InstanceStatus.FAILED, f"agent error: {type(exc).__name__}: {exc}")
        finally:
            if self._slot is not None:  # first, so the next attempt in line starts before this one reports
                # A slot handed straight to the next attempt keeps this leader's line until that
                # attempt's start overwrites it: the leader is reaped and its group killed, so a
                # successor would find nothing there to kill (and the start time guards a reused pid).
                if not self._slots.release(self._slot):
                    self._spawner.leaders.clear(self._slot)
                self._slot = None
        self.phase = Phase.FINISHED
        self._on_finished(self)
        await self._send_update(final)

    # ---------------------------------------------------------------- phases

    async def _run(self) -> TaskInstanceUpdatedData:
        launch: launching.Launch | None = None
        unstartable: launching.LaunchError | None = None
        if self._stop is None and self._timer.delay(self.task.fire_at) > PREPARE_AHEAD_SECS:
            # Made while waiting, so that the fire time costs only the start of the process; a reason it
            # cannot start is still reported at the fire time, like one found then.
            try:
                launch = await self._spawner.prepare(self.task)
            except launching.LaunchError as exc:
                unstartable = exc
        if not await self._wait_for_fire() or not await self._wait_for_slot():
            assert self._stop is not None
            return self._final(self._stop.status, self._stop.error)
        assert self._slot is not None
        if unstartable is not None:
            return self._final(InstanceStatus.FAILED, str(unstartable))
        self.phase = Phase.STARTING
        try:
            started = await self._spawner.start(
                self.task, slot=self._slot, cpu_secs=self.task.config.limits.cpu_secs, launch=launch
            )
        except launching.LaunchError as exc:
            return self._final(InstanceStatus.FAILED, str(exc))
        return await self._supervise(started)

    async def _wait_for_fire(self) -> bool:
        """Wait for the fire time; False when a stop request came first."""
        if self._stop is None and self._timer.delay(self.task.fire_at) > 0:
            fired = asyncio.ensure_future(self._timer.wait_until(self.task.fire_at))
            try:
                await self._wait_any(fired)
            finally:
                fired.cancel()
            if fired.done() and not fired.cancelled():
                fired.result()  # surface a timer bug as this attempt's failure
        return self._stop is None

    async def _wait_for_slot(self) -> bool:
        """Take a run slot, waiting in line for one; False when a stop request came first."""
        if self._stop is not None:
            return False
        self._slot = self._slots.try_take()
        if self._slot is not None:
            return True
        turn = self._slots.turn()
        try:
            await self._wait_any(turn)
        finally:
            if not turn.done():
                turn.cancel()  # leave the line
            if not turn.cancelled():
                self._slot = turn.result()
        return self._slot is not None and self._stop is None

    async def _wait_any(self, *futures: asyncio.Future[Any], within_secs: float | None = None) -> None:
        """Until one of ``futures`` is done, a stop is requested, or ``within_secs`` passed."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        wake = functools.partial(_wake, waiter)
        for future in futures:
            future.add_done_callback(wake)
        timer = loop.call_later(within_secs, wake) if within_secs is not None else None
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
            for future in futures:
                future.remove_done_callback(wake)
            if timer is not None:
                timer.cancel()

    async def _supervise(self, started: child.Started) -> TaskInstanceUpdatedData:
        popen = started.popen
        pid = popen.pid
        buffer = OutputBuffer(
            self.instance_id,
            max_output_bytes=self._max_output_bytes(),
            chunk_bytes=self._settings.log_chunk_bytes,
            tail_bytes=self._settings.output_tail_bytes,
        )
        pump = LogPump(buffer, flush_secs=self._settings.log_flush_secs)
        pump.connect(started.stdout, started.stderr)
        self.pid = pid
        self.started_at = self._timer.clock.server_now()
        self.phase = Phase.RUNNING
        begun = time.monotonic()
        exited = child.watch_exit(pid)
        exited.add_done_callback(functools.partial(_settle, popen))
        sender: asyncio.Task[None] | None = None

        def start_sender() -> None:
            nonlocal sender
            sender = asyncio.create_task(self._send_logs(pump), name=f"hetuflow-logs-{self.instance_id}")

        try:
            await self._send_update(
                TaskInstanceUpdatedData(
                    instance_id=self.instance_id,
                    task_id=self.task.task_id,
                    status=InstanceStatus.RUNNING,
                    seq=self._take_seq(),
                    at=self.started_at,
                )
            )
            # Log chunks only after ``running``, by a sender task that exists only once there is output:
            # most short tasks print nothing and need none.
            pump.when_output(start_sender)
            await self._enforce(exited, pid, begun)
            status = await exited
            self._exited = True
            duration = time.monotonic() - begun
            await pump.wait_closed(self._settings.pipe_drain_secs)
        finally:
            if not exited.done():  # only when the agent itself failed or is being cancelled
                child.signal_group(pid, signal.SIGKILL)
            pump.finish()
            if sender is not None:
                await sender
        return self._outcome(status, buffer, duration)

    async def _enforce(self, exited: asyncio.Future[child.ExitStatus], pid: int, started: float) -> None:
        """Until the leader exits: apply the timeout and stop requests to the process group."""
        timeout = self.task.config.timeout_secs
        deadline = started + timeout if timeout is not None else None
        grace = self._settings.kill_grace_secs
        term_sent_at: float | None = None
        killed = False
        while not exited.done():
            now = time.monotonic()
            if self._stop is None and deadline is not None and now >= deadline:
                self.request_stop(InstanceStatus.TIMEOUT, f"timed out after {timeout:g} s", immediate=False)
            wake_at = deadline
            if self._stop is not None:
                if self._stop.immediate or (term_sent_at is not None and now >= term_sent_at + grace):
                    if not killed:
                        child.signal_group(pid, signal.SIGKILL)
                        killed = True
                    wake_at = None
                else:
                    if term_sent_at is None:
                        child.signal_group(pid, signal.SIGTERM)
                        term_sent_at = now
                    wake_at = term_sent_at + grace
            await self._wait_any(
                exited, within_secs=None if wake_at is None else max(0.0, wake_at - time.monotonic())
            )

    # ---------------------------------------------------------------- reports

    def _outcome(
        self, status: child.ExitStatus, buffer: OutputBuffer, duration: float
    ) -> TaskInstanceUpdatedData:
        code = status.returncode
        exit_code = code if code is not None and code >= 0 else None
        signum = -code if code is not None and code < 0 else None
        cpu = max(status.cpu_secs, self._peak_cpu)
        cpu_limit = self.task.config.limits.cpu_secs
        if self._stop is not None:
            result, error = self._stop.status, self._stop.error
        elif code == 0:
            result, error = InstanceStatus.SUCCEEDED, None
        elif cpu_limit is not None and (signum == signal.SIGXCPU or cpu >= cpu_limit):
            result = InstanceStatus.FAILED
            error = f"cpu limit exceeded: used {cpu:.1f} s of CPU time, limit {cpu_limit} s (RLIMIT_CPU)"
        elif code is None:
            result, error = (
                InstanceStatus.FAILED,
                "exit status unknown: the process was reaped outside the agent",
            )
        elif signum is not None:
            result, error = InstanceStatus.FAILED, f"killed by signal {_signal_name(signum)}"
        else:
            result, error = InstanceStatus.FAILED, f"exited with code {code}"
        return self._final(
            result,
            error,
            exit_code=exit_code,
            signal=signum,
            output=buffer.tail(),
            output_truncated=buffer.truncated,
            metrics=InstanceMetrics(
                peak_rss_bytes=max(status.max_rss_bytes, self._peak_rss),
                cpu_secs=cpu,
                duration_secs=duration,
            ),
        )

    def _final(
        self,
        status: InstanceStatus,
        error: str | None,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        output: str = "",
        output_truncated: bool = False,
        metrics: InstanceMetrics | None = None,
    ) -> TaskInstanceUpdatedData:
        return TaskInstanceUpdatedData(
            instance_id=self.instance_id,
            task_id=self.task.task_id,
            status=status,
            seq=self._take_seq(),
            at=self._timer.clock.server_now(),
            exit_code=exit_code,
            signal=signal,
            error=None if error is None else error[:_MAX_ERROR_CHARS],
            output=output,
            output_truncated=output_truncated,
            metrics=metrics,
        )

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _max_output_bytes(self) -> int:
        limit = self.task.config.limits.max_output_bytes
        return self._settings.max_output_bytes if limit is None else limit

    async def _send_logs(self, pump: LogPump) -> None:
        """The attempt's log sender: every chunk in order (after ``running``, before the final report)."""
        async for chunk in pump.chunks():
            try:
                await self._on_log(chunk)
            except Exception:
                logger.exception("log callback failed", extra={"instance_id": str(self.instance_id)})

    async def _send_update(self, update: TaskInstanceUpdatedData) -> None:
        try:
            await self._on_update(update)
        except Exception:
            # The connection layer queues reports; if it fails there is nobody better to tell.
            logger.exception("update callback failed", extra={"instance_id": str(self.instance_id)})


def _wake(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _settle(popen: subprocess.Popen[bytes], exited: asyncio.Future[child.ExitStatus]) -> None:
    """Tell the ``Popen`` object its child was reaped, so it neither waits nor warns about it."""
    if exited.cancelled() or exited.exception() is not None:
        return
    code = exited.result().returncode
    popen.returncode = code if code is not None else -1


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
