"""Process groups left behind by a previous agent that died without cleaning up.

Every running attempt's leader is recorded with its pid and start time. When the agent starts again with
the same working directory, every recorded group that still exists is killed before registration: the
server has meanwhile declared those attempts lost and may run them elsewhere, and they must not run
twice. The start time guards against pid reuse: a live process with the recorded pid but another start
time is someone else and is left alone; when no process has the recorded pid, any group with that id
can only be the old task's leftovers (a group id is the pid of its creator).

The records live in one file, ``<workdir>/tasks/.leaders``, with one fixed-size line per run slot:
recording a start is one ``pwrite`` into a file already open, where a file per attempt cost a create
and an unlink — on a journaling file system the largest part of an attempt's system time. A line reads
``"<pid> @<start> <instance id>"``; ``<start>`` is the start time in clock ticks since boot, as
``/proc/<pid>/stat`` gives it (exact, and immune to wall-clock steps), or psutil's epoch seconds without
the ``@`` where ``/proc`` is missing. Reading ``/proc`` for every start was most of the cost of a record,
so the spawner brackets the start instead: the boot clock read before and after the process was
created, in the same ticks, holds the kernel's start time between them (``@<first>-<last>`` when the
two differ, a span of a tick or two). A slot's line is blanked when the slot falls free, or overwritten
by the next leader when the slot passes straight on to the next attempt; a line left stale (by a crash,
or in that short hand-over) names a reaped leader whose group was killed, or a foreign process with
another start time, and is harmless. Older agents wrote
``"<pid> <seconds>"`` into ``<task dir>/.hetuflow-pid``; those files are read as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Final

import psutil

__all__ = ["LEADERS_FILE", "PID_FILE", "LeaderTable", "reap_orphans"]

logger = logging.getLogger(__name__)

LEADERS_FILE: Final = ".leaders"
PID_FILE: Final = ".hetuflow-pid"
"""The per-attempt record of older agents."""
_RECORD_BYTES: Final = 96
"""One line: pid, start ticks and an instance id (about 70 characters) with room to spare."""
_BLANK: Final = b" " * (_RECORD_BYTES - 1) + b"\n"
_START_TIME_TOLERANCE_SECS: Final = 0.05
_STARTTIME_FIELD: Final = 19
"""Index of ``starttime`` (field 22 of ``/proc/<pid>/stat``) among the fields after the command name."""
_BOOT_CLOCK: Final = getattr(time, "CLOCK_BOOTTIME", None)
"""The clock of ``/proc``'s start times (Linux only)."""
_TICK_NS: Final = 1_000_000_000 // os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0


class LeaderTable:
    """The leaders of the attempts running in each run slot, in ``<tasks_root>/.leaders``.

    ``record`` may be called from worker threads (each slot by one attempt at a time); the file is
    opened on first use. Failures are logged, never raised: a missing record only weakens the cleanup
    after a crash.
    """

    def __init__(self, tasks_root: Path, slots: int) -> None:
        self.path = tasks_root / LEADERS_FILE
        self._slots = slots
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._bracket = _BOOT_CLOCK is not None and _TICK_NS > 0 and os.path.exists("/proc/self/stat")

    def now(self) -> int | None:
        """The boot clock now, in ``/proc``'s start-time ticks; None where starts are not bracketed.

        Read it just before creating a process and pass it to ``record`` as ``started_after``.
        """
        if not self._bracket:
            return None
        assert _BOOT_CLOCK is not None
        return time.clock_gettime_ns(_BOOT_CLOCK) // _TICK_NS

    def reset(self) -> None:
        """Start with every slot blank (after ``reap_orphans`` dealt with what the file said)."""
        fd = self._open()
        if fd is not None:
            self._write(fd, _BLANK * self._slots, 0)
            os.ftruncate(fd, self._slots * _RECORD_BYTES)

    def record(self, slot: int, pid: int, instance_id: str, *, started_after: int | None = None) -> None:
        """Note that ``pid`` leads the attempt ``instance_id`` running in ``slot``.

        ``started_after`` is ``now()`` read before the process was created; call this right after.
        Without it the start time is read from ``/proc``.
        """
        if started_after is not None and (last := self.now()) is not None:
            started = f"@{started_after}" if last == started_after else f"@{started_after}-{last}"
        elif (ticks := _start_ticks(pid)) is not None:
            started = f"@{ticks}"
        else:
            try:
                started = repr(psutil.Process(pid).create_time())
            except psutil.Error:
                return  # already gone: nothing to reap later
        line = f"{pid} {started} {instance_id}".encode("ascii")[: _RECORD_BYTES - 1]
        fd = self._open()
        if fd is not None:
            self._write(fd, line.ljust(_RECORD_BYTES - 1) + b"\n", slot * _RECORD_BYTES)

    def clear(self, slot: int) -> None:
        """``slot`` runs nothing any more."""
        if self._fd is not None:
            self._write(self._fd, _BLANK, slot * _RECORD_BYTES)

    def close(self) -> None:
        """Close the file (the records stay: a blank table after a clean stop)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int | None:
        with self._lock:
            if self._fd is None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                except OSError as exc:
                    logger.warning("cannot record process groups in %s: %s", self.path, exc)
            return self._fd

    def _write(self, fd: int, data: bytes, offset: int) -> None:
        try:
            os.pwrite(fd, data, offset)
        except OSError as exc:
            logger.warning("cannot record process groups in %s: %s", self.path, exc)


def reap_orphans(tasks_root: Path, *, remove_dirs: bool) -> list[int]:
    """Kill the recorded process groups under ``tasks_root`` still alive; returns their ids.

    With ``remove_dirs`` the task directories are deleted as well. Blocking (reads ``/proc``).
    """
    killed: list[int] = []
    if not tasks_root.is_dir():
        return killed
    with contextlib.suppress(OSError):
        table = (tasks_root / LEADERS_FILE).read_text(encoding="ascii")
        # Slots never written since the file was created read as NUL bytes (a hole): blanks too.
        for line in table.replace("\x00", " ").splitlines():
            fields = line.split()
            if len(fields) == 3 and _reap(fields[0], fields[1], fields[2]):
                killed.append(int(fields[0]))
    for task_dir in tasks_root.iterdir():
        with contextlib.suppress(OSError, ValueError):
            pid_text, started_text = (task_dir / PID_FILE).read_text(encoding="ascii").split()
            if _reap(pid_text, started_text, task_dir.name):
                killed.append(int(pid_text))
        if remove_dirs and task_dir.is_dir():
            shutil.rmtree(task_dir, ignore_errors=True)
    return killed


def _reap(pid_text: str, started: str, instance: str) -> bool:
    """Kill the recorded group if it is still the recorded one; True when it was killed."""
    try:
        pgid = int(pid_text)
        doomed = pgid > 1 and _may_kill(pgid, started)
    except ValueError:  # not a record this agent wrote
        return False
    if doomed and _kill_group(pgid):
        logger.warning("killed process group %d left by a previous agent (%s)", pgid, instance)
        return True
    return False


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, from ``/proc``; None where that is not readable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: count fields after the last ")".
    fields = text[text.rindex(b")") + 2 :].split()
    return int(fields[_STARTTIME_FIELD])


def _may_kill(pgid: int, started: str) -> bool:
    if started.startswith("@"):
        first, _, last = started[1:].partition("-")
        ticks = _start_ticks(pgid)
        return ticks is None or int(first) <= ticks <= int(last or first)  # None: no such process
    try:
        leader_started = psutil.Process(pgid).create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    return abs(leader_started - float(started)) < _START_TIME_TOLERANCE_SECS


def _kill_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
