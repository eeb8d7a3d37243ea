"""Preparing and starting attempts' processes, and removing their task directories, off the event loop.

Starting a process holds the calling thread until the child has called ``exec`` (``vfork``), which on a
busy host takes milliseconds; so do the task directory, the script file and the orphan record, each a
system call or two that a loaded disk can stretch. Run on the event loop, that time would stall every
other attempt's pipes and reports and the connection. ``Spawner`` runs them on a few worker threads of
its own instead (the waits release the GIL), so several starts overlap and the loop only collects the
result. The threads are separate from the loop's default executor, where process sampling runs, so a
slow sample never delays a start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Final, NamedTuple

from hetuflow_agent.executor import argv as argvs
from hetuflow_agent.executor import capabilities
from hetuflow_agent.executor import launch as launching
from hetuflow_agent.executor.scratch import ScratchDirs
from hetuflow_agent.process import child, orphans
from hetuflow_agent.process.workers import Workers
from hetuflow_core.enums import CommandKind
from hetuflow_core.protocol import ScheduledTaskData

__all__ = ["DEFAULT_SPAWN_THREADS", "Spawner"]

logger = logging.getLogger(__name__)

DEFAULT_SPAWN_THREADS: Final = 4
"""Starts in flight at once; beyond a few, more threads only contend for the same cores."""


class Spawner:
    """Starts attempts' processes and removes their task directories on ``threads`` worker threads.

    ``executables``, ``base_env`` and ``workdir`` are those of ``launch.prepare_launch``; ``slots`` is
    the number of run slots (``leaders`` has a line for each); up to ``spares`` finished task
    directories are kept for recycling. Call ``close`` once no start is awaited any more.
    """

    def __init__(
        self,
        *,
        executables: Mapping[CommandKind, str],
        base_env: Mapping[str, str],
        workdir: Path,
        slots: int,
        spares: int = 0,
        threads: int = DEFAULT_SPAWN_THREADS,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._executables = executables
        self._base_env = base_env
        self._workdir = workdir
        self._tasks_root = str(workdir / "tasks")
        self._scratch = ScratchDirs(workdir / "tasks", keep=spares)
        self.leaders = orphans.LeaderTable(workdir / "tasks", slots)
        """Who runs in which run slot, for the orphan reaper of a successor; ``start`` records."""
        self._resolve = capabilities.ExecutableCache()
        self._workers = Workers(threads, "hetuflow-spawn")
        # One /dev/null for every child's stdin, instead of an open and close per start.
        self._devnull: int | None = None
        self._devnull_lock = threading.Lock()
        # Directories to remove, queued until the next start takes them along or the end of the loop
        # turn: on a busy agent that is one worker wake-up per attempt instead of two, and the start
        # can recycle the very directory just released.
        self._releases: list[_Release] = []
        self._releases_scheduled = False
        self._closing = False

    async def prepare(self, task: ScheduledTaskData) -> launching.Launch:
        """Make ``task``'s launch (task directory, script) now, for a ``start`` at its fire time that then
        only starts the process. Raises ``LaunchError`` saying why it cannot start."""
        releases, self._releases = self._releases, []
        return await self._workers.call(self._prepare, task, releases)

    async def start(
        self,
        task: ScheduledTaskData,
        *,
        slot: int,
        cpu_secs: int | None,
        launch: launching.Launch | None = None,
    ) -> child.Started:
        """Start ``task``'s process in run slot ``slot``, from its ``launch`` made by ``prepare`` or, without
        one, after making it (task directory, script).

        Raises ``LaunchError`` saying why it cannot start. The caller owns the result: it must reap
        the process (``child.watch_exit``) and close the pipes. Should the awaiting task be cancelled
        meanwhile, a process started anyway is killed and reaped here.
        """
        releases, self._releases = self._releases, []
        return await self._workers.call(
            self._start, task, slot, cpu_secs, releases, launch, on_abandoned=_abandon
        )

    def remove_task_dir(self, task: ScheduledTaskData) -> None:
        """Clear away the attempt's task directory (missing is fine), in the background.

        On a worker thread, before the next start that is asked for in this loop turn, or on its own
        after it. Nothing waits for it but ``close``: nothing else needs the directory gone at a given
        moment.
        """
        name = str(task.instance_id)
        task_dir = os.path.join(self._tasks_root, name)  # launch.task_dir_for, as a str
        script = argvs.SCRIPT_FILENAMES.get(task.config.command) if task.config.script is not None else None
        self._releases.append(_Release(task_dir, script, name))
        if not self._releases_scheduled:
            self._releases_scheduled = True
            asyncio.get_running_loop().call_soon(self._submit_releases)

    async def close(self) -> None:
        """Finish the removals still queued, stop the worker threads and release the files held."""
        self._closing = True
        releases, self._releases = self._releases, []
        await asyncio.to_thread(self._shut_down, releases)

    def _submit_releases(self) -> None:
        self._releases_scheduled = False
        if self._releases and not self._closing:  # else a start took them, or close does them
            releases, self._releases = self._releases, []
            self._workers.submit(self._release_all, releases)

    def _shut_down(self, releases: list[_Release]) -> None:
        self._release_all(releases)
        self._workers.shutdown()
        self._scratch.clear()
        self.leaders.close()
        with self._devnull_lock:
            if self._devnull is not None:
                os.close(self._devnull)
                self._devnull = None

    # ---------------------------------------------------------------- on the worker threads

    def _release_all(self, releases: list[_Release]) -> None:
        for release in releases:
            try:
                self._scratch.release(release.task_dir, release.script, release.spare_name)
            except Exception:  # a directory left behind must not cost the start that carried it
                logger.exception("cannot remove task directory %s", release.task_dir)

    def _prepare(self, task: ScheduledTaskData, releases: list[_Release]) -> launching.Launch:
        self._release_all(releases)
        return launching.prepare_launch(
            task,
            executables=self._executables,
            base_env=self._base_env,
            workdir=self._workdir,
            resolve=self._resolve,
            scratch=self._scratch,
        )

    def _start(
        self,
        task: ScheduledTaskData,
        slot: int,
        cpu_secs: int | None,
        releases: list[_Release],
        launch: launching.Launch | None,
    ) -> child.Started:
        if launch is None:
            launch = self._prepare(task, releases)
        else:
            self._release_all(releases)
        program = launch.argv[0]
        before = self.leaders.now()
        try:
            started = child.spawn(launch, cpu_secs=cpu_secs, stdin=self._stdin())
        except OSError as exc:
            raise launching.LaunchError(f"cannot start {program}: {exc.strerror or exc}") from None
        except (ValueError, subprocess.SubprocessError) as exc:  # NUL in argv/env, failure in the child
            raise launching.LaunchError(f"cannot start {program}: {exc}") from None
        self.leaders.record(slot, started.popen.pid, str(task.instance_id), started_after=before)
        return started

    def _stdin(self) -> int:
        with self._devnull_lock:
            if self._devnull is None:
                self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            return self._devnull


class _Release(NamedTuple):
    """A finished attempt's task directory, to recycle or remove (``ScratchDirs.release``)."""

    task_dir: str
    script: str | None
    spare_name: str


def _abandon(process: child.Started) -> None:
    """A start finished for an attempt that was cancelled meanwhile: stop and reap what it started."""
    os.close(process.stdout)
    os.close(process.stderr)
    child.signal_group(process.popen.pid, signal.SIGKILL)
    try:
        exited = child.watch_exit(process.popen.pid)
    except RuntimeError:  # no running loop any more (shutdown): the agent's exit reaps it
        return
    exited.add_done_callback(lambda _: setattr(process.popen, "returncode", -signal.SIGKILL))
