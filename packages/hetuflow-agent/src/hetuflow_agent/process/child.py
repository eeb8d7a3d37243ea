"""Starting a task's process in its own process group, signalling that group, and reaping the process.

The process is started with ``subprocess.Popen`` (not ``asyncio.create_subprocess_exec``) because the
agent reaps it itself with ``os.wait4``: that returns the exact CPU time and peak RSS of the process and
of every descendant it waited for, which asyncio's child watchers throw away. The exit is noticed
without a thread through a pidfd registered with the event loop (Linux ≥ 5.3); elsewhere a small
thread waits. Either way the group's leftovers are killed *before* the leader is reaped: while the
leader is an unreaped zombie its pid — the group id — cannot be reused, so the kill cannot hit an
unrelated process.

``start_new_session`` gives the process its own session and process group, so a signal to the group
reaches every descendant that did not leave it. Nothing runs in the child between fork and exec (no
``preexec_fn``), which lets ``subprocess`` use ``vfork``: the parent is held only until the ``exec``,
without copying the agent's page tables. A job's CPU limit is therefore set from the parent with
``prlimit(2)`` as soon as the process exists; see ``spawn`` for the short window that leaves and what
covers it. (For the same reason there is no ``PR_SET_PDEATHSIG``: groups a crashed agent leaves behind
are killed by the orphan reaper when it starts again.)

The parent is held until the child has called ``exec`` — on a busy host that is milliseconds — so the
process manager calls ``spawn`` from worker threads (``subprocess`` releases the GIL while it waits),
never on the event loop.
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

__all__ = ["ExitStatus", "Started", "signal_group", "spawn", "watch_exit"]

_RSS_UNIT: Final = 1024 if sys.platform.startswith("linux") else 1  # ru_maxrss: KiB on Linux, bytes on macOS
_HAS_PRLIMIT: Final = hasattr(resource, "prlimit")


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


def _cpu_limit_in_child(cpu_secs: int) -> Callable[[], None]:
    """Where ``prlimit`` is missing: set ``RLIMIT_CPU`` in the child before ``exec`` (forces a fork)."""
    limits = _cpu_limits(cpu_secs)

    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, limits)

    return setup


def spawn(launch: Launch, *, cpu_secs: int | None = None, stdin: int = subprocess.DEVNULL) -> Started:
    """Start ``launch`` in a new session with stdout/stderr as pipes and stdin from ``stdin``.

    ``stdin`` is a file descriptor (the caller's ``/dev/null``, kept open) or ``subprocess.DEVNULL``.
    Blocks until the child has called ``exec``: call it from a worker thread. Raises ``OSError`` when
    the program cannot be started or its CPU limit cannot be set (it is then killed and reaped), and
    ``ValueError`` for a NUL character in argv or env. The caller must reap the process with
    ``watch_exit`` (and never call ``Popen.wait``) and close the two pipe ends.

    With ``cpu_secs`` the limit is applied right after the start. The leader's own CPU time counts
    from its start whenever the limit is set, so the leader is held to it exactly; a child it forked
    in the few microseconds before keeps no ``RLIMIT_CPU`` of its own, and is held by the process
    manager's sampling of the whole tree's CPU time instead.
    """
    in_child = cpu_secs is not None and not _HAS_PRLIMIT
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        popen = subprocess.Popen(
            launch.argv,
            cwd=launch.cwd,
            env=launch.env,
            stdin=stdin,
            stdout=out_write,
            stderr=err_write,
            close_fds=True,
            start_new_session=True,
            preexec_fn=_cpu_limit_in_child(cpu_secs) if in_child and cpu_secs is not None else None,
        )
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        # The child holds its own copies; ours would keep the pipes open after it exits.
        os.close(out_write)
        os.close(err_write)
    if cpu_secs is not None and not in_child:
        try:
            _limit_cpu(popen.pid, cpu_secs)
        except OSError:
            signal_group(popen.pid, signal.SIGKILL)
            popen.wait()
            os.close(out_read)
            os.close(err_read)
            raise
    os.set_blocking(out_read, False)
    os.set_blocking(err_read, False)
    return Started(popen, out_read, err_read)


def _limit_cpu(pid: int, cpu_secs: int) -> None:
    try:
        resource.prlimit(pid, resource.RLIMIT_CPU, _cpu_limits(cpu_secs))
    except ProcessLookupError:
        pass  # reaped already (only possible if another part of the program reaps children): nothing to limit
    except ValueError as exc:
        raise OSError(f"cannot set the CPU limit: {exc}") from exc


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
