"""Starting a task's process in its own process group, signalling that group, and reaping the process.

The agent reaps the process itself with ``os.wait4`` (hence ``subprocess.Popen``, not asyncio's child
watchers, which discard it): that gives the exact CPU time and peak RSS of the process and its waited-for
descendants. The group's leftovers are killed *before* the leader is reaped, while its pid (the group id)
cannot be reused, so the kill never hits an unrelated process. Nothing runs between fork and exec (no
``preexec_fn``), so ``subprocess`` uses ``vfork``; a job's CPU limit is set by ``/bin/sh`` (``ulimit -t``,
then ``exec`` of the program in the same process), which leaves no moment for a child to escape it.
``spawn`` blocks until the child called ``exec`` and is called from worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import resource
import signal
import subprocess
import sys
import threading
from typing import Final, NamedTuple

from hetuflow_agent.executor.launch import Launch
from hetuflow_agent.process.watcher import watcher_for

__all__ = ["ExitStatus", "Started", "signal_group", "spawn", "watch_exit"]

_RSS_UNIT: Final = 1024 if sys.platform.startswith("linux") else 1  # ru_maxrss: KiB on Linux, bytes on macOS
_SHELL: Final = "/bin/sh"


class ExitStatus(NamedTuple):
    """How a reaped process ended and what it used (itself plus the descendants it waited for).

    ``returncode`` follows ``subprocess``: negative means killed by that signal; None means another
    part of the program reaped the process first and the status is unknown.
    """

    returncode: int | None
    cpu_secs: float
    max_rss_bytes: int


class Started(NamedTuple):
    """A started process and the read ends of its stdout and stderr pipes (non-blocking, the caller's)."""

    popen: subprocess.Popen[bytes]
    stdout: int
    stderr: int


def _cpu_limits(cpu_secs: int) -> tuple[int, int]:
    """Soft and hard ``RLIMIT_CPU`` for a job limit, within the hard limit the agent itself has."""
    # Soft limit → SIGXCPU (terminates by default); the hard limit one second later → SIGKILL for a
    # process that catches SIGXCPU. Nobody may raise a hard limit, so a lower one of the agent's wins.
    soft, hard = cpu_secs, cpu_secs + 1
    ceiling = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    return soft, hard


def _with_cpu_limit(argv: list[str], cpu_secs: int) -> list[str]:
    """``argv`` run by ``/bin/sh`` after it set ``RLIMIT_CPU`` (soft first: it must stay <= hard)."""
    soft, hard = _cpu_limits(cpu_secs)
    script = f'ulimit -S -t {soft} && ulimit -H -t {hard} && exec "$@"'
    return [_SHELL, "-c", script, "hetuflow-cpu-limit", *argv]


def spawn(launch: Launch, *, cpu_secs: int | None = None, stdin: int = subprocess.DEVNULL) -> Started:
    """Start ``launch`` in a new session with stdout/stderr as pipes and stdin from ``stdin``.

    ``stdin`` is a file descriptor (the caller's ``/dev/null``, kept open) or ``subprocess.DEVNULL``.
    With ``cpu_secs`` the process holds that CPU limit (and passes it to what it starts) from its first
    instruction. Blocks until the child has called ``exec``: call it from a worker thread. Raises
    ``OSError`` when the program cannot be started and ``ValueError`` for a NUL character in argv or
    env. The caller must reap the process with ``watch_exit`` (and never call ``Popen.wait``) and
    close the two pipe ends.
    """
    argv = launch.argv if cpu_secs is None else _with_cpu_limit(launch.argv, cpu_secs)
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        popen = subprocess.Popen(
            argv,
            cwd=launch.cwd,
            env=launch.env,
            stdin=stdin,
            stdout=out_write,
            stderr=err_write,
            close_fds=True,
            start_new_session=True,
        )
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        # The child holds its own copies; ours would keep the pipes open after it exits.
        os.close(out_write)
        os.close(err_write)
    # A fresh read end has no status flags but its access mode (which F_SETFL leaves alone), so one
    # F_SETFL does what os.set_blocking does with a F_GETFL first.
    fcntl.fcntl(out_read, fcntl.F_SETFL, os.O_NONBLOCK)
    fcntl.fcntl(err_read, fcntl.F_SETFL, os.O_NONBLOCK)
    return Started(popen, out_read, err_read)


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
    except (AttributeError, OSError):
        _wait_in_thread(pid, kill_group, loop, future)
        return future

    watcher = watcher_for(loop)

    def on_readable() -> None:
        status = _reap(pid, kill_group, blocking=False)
        if status is None:
            return  # spurious wake-up; the leader is still running
        watcher.remove(pidfd)
        os.close(pidfd)
        if not future.done():
            future.set_result(status)

    watcher.add(pidfd, on_readable)
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
