"""Starting a task's process in its own process group, signalling that group, and reaping the process.

The agent reaps the process itself with ``os.wait4`` (hence ``subprocess.Popen``, not asyncio's child
watchers, which discard it): that gives the exact CPU time and peak RSS of the process and its waited-for
descendants. The group's leftovers are killed *before* the leader is reaped, while its pid (the group id)
cannot be reused, so the kill never hits an unrelated process. Only jobs with a CPU limit use a
``preexec_fn`` (for ``RLIMIT_CPU``): it makes ``subprocess`` fork instead of vfork, 5-10 ms per start.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Final, NamedTuple

from hetuflow_agent.executor.launch import Launch

__all__ = ["ExitStatus", "signal_group", "spawn", "watch_exit"]

_RSS_UNIT: Final = 1024 if sys.platform.startswith("linux") else 1  # ru_maxrss: KiB on Linux, bytes on macOS


class ExitStatus(NamedTuple):
    """How a reaped process ended and what it used (itself plus the descendants it waited for).

    ``returncode`` follows ``subprocess``: negative means killed by that signal; None means another
    part of the program reaped the process first and the status is unknown.
    """

    returncode: int | None
    cpu_secs: float
    max_rss_bytes: int


def _cpu_limit(cpu_secs: int) -> Callable[[], None]:
    """The function run in the child between fork and exec: set ``RLIMIT_CPU`` (one system call)."""

    def setup() -> None:
        # Soft limit → SIGXCPU (terminates by default); the hard limit one second later → SIGKILL for a
        # process that catches SIGXCPU.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_secs, cpu_secs + 1))

    return setup


def spawn(launch: Launch, *, cpu_secs: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``launch`` in a new session with stdin from /dev/null and stdout/stderr as pipes.

    Raises ``OSError`` when the program cannot be started. The caller must reap the process with
    ``watch_exit`` (and never call ``Popen.wait``).
    """
    return subprocess.Popen(
        launch.argv,
        cwd=launch.cwd,
        env=launch.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # raw pipes: the event loop reads the file descriptors directly
        close_fds=True,
        start_new_session=True,
        # A preexec_fn makes subprocess fork instead of vfork, so only jobs with a CPU limit pay for one.
        # For the same reason there is no PR_SET_PDEATHSIG: the orphan reaper kills the groups a crashed
        # agent left behind when it starts again.
        preexec_fn=None if cpu_secs is None else _cpu_limit(cpu_secs),
    )


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to every process of group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A member changed its user (setuid program); the others got the signal all the same.
        return True
    return True


def watch_exit(pid: int, *, kill_group: bool = True) -> asyncio.Future[ExitStatus]:
    """A future resolved with the exit status of child ``pid``, which this function reaps.

    With ``kill_group`` the process group ``pid`` leads is sent SIGKILL as soon as the leader has
    exited (before reaping it), so nothing the task started outlives it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ExitStatus] = loop.create_future()
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (before Linux 5.3, other systems): a small thread waits
        _wait_in_thread(pid, kill_group, loop, future)
        return future

    def on_readable() -> None:
        status = _reap(pid, kill_group, blocking=False)
        if status is None:
            return  # spurious wake-up; the leader is still running
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not future.done():
            future.set_result(status)

    loop.add_reader(pidfd, on_readable)
    return future


def _wait_in_thread(
    pid: int, kill_group: bool, loop: asyncio.AbstractEventLoop, future: asyncio.Future[ExitStatus]
) -> None:
    def wait() -> None:
        status = _reap(pid, kill_group, blocking=True)
        assert status is not None  # a blocking wait returns only once the process is gone
        loop.call_soon_threadsafe(_resolve, future, status)

    threading.Thread(target=wait, name=f"hetuflow-wait-{pid}", daemon=True).start()


def _resolve(future: asyncio.Future[ExitStatus], status: ExitStatus) -> None:
    if not future.done():
        future.set_result(status)


def _reap(pid: int, kill_group: bool, *, blocking: bool) -> ExitStatus | None:
    """Reap ``pid`` if it has exited (killing its group first); None when it is still running."""
    if kill_group:
        # Only once the leader has exited: checked without reaping, so the zombie keeps the id ours.
        try:
            exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | (0 if blocking else os.WNOHANG))
        except ChildProcessError:
            return ExitStatus(None, 0.0, 0)
        if exited is None:
            return None
        signal_group(pid, signal.SIGKILL)
    try:
        reaped, wait_status, usage = os.wait4(pid, 0 if blocking else os.WNOHANG)
    except ChildProcessError:
        return ExitStatus(None, 0.0, 0)
    if reaped == 0:
        return None
    return ExitStatus(
        os.waitstatus_to_exitcode(wait_status),
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss * _RSS_UNIT,
    )
