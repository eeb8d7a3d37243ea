"""Process groups left behind by a previous agent that died without cleaning up.

At spawn, the leader's pid and start time are recorded in the attempt's task directory. When the
agent starts again with the same working directory, every recorded group that still exists is killed
before registration: the server has meanwhile declared those attempts lost and may run them elsewhere,
and they must not run twice. The start time guards against pid reuse: a live process with the recorded
pid but another start time is someone else and is left alone; when no process has the recorded pid,
any group with that id can only be the old task's leftovers (a group id is the pid of its creator).

The record is written for every attempt, so it is kept cheap: the line ``"<pid> @<start>"`` written
with plain system calls, where ``<start>`` is the start time in clock ticks since boot read straight
from ``/proc/<pid>/stat`` — exact, and immune to wall-clock steps between the record and the check.
Where ``/proc`` is missing the start time is psutil's epoch seconds (``"<pid> <seconds>"``, the form
older agents wrote, which is read as well).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Final

import psutil

__all__ = ["PID_FILE", "reap_orphans", "record_leader"]

logger = logging.getLogger(__name__)

PID_FILE: Final = ".hetuflow-pid"
_START_TIME_TOLERANCE_SECS: Final = 0.05
_STARTTIME_FIELD: Final = 19
"""Index of ``starttime`` (field 22 of ``/proc/<pid>/stat``) among the fields after the command name."""


def record_leader(task_dir: Path, pid: int) -> None:
    """Record ``pid`` and its start time in ``task_dir`` (best effort; a failure is only logged)."""
    ticks = _start_ticks(pid)
    if ticks is not None:
        record = f"{pid} @{ticks}"
    else:
        try:
            record = f"{pid} {psutil.Process(pid).create_time()!r}"
        except psutil.Error:
            return  # already gone: nothing to reap later
    try:
        fd = os.open(task_dir / PID_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{record}\n".encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        logger.warning("cannot record process group of %s: %s", task_dir.name, exc)


def reap_orphans(tasks_root: Path, *, remove_dirs: bool) -> list[int]:
    """Kill the recorded process groups under ``tasks_root`` still alive; returns their ids.

    With ``remove_dirs`` the task directories are deleted as well. Blocking (reads ``/proc``).
    """
    killed: list[int] = []
    if not tasks_root.is_dir():
        return killed
    for task_dir in tasks_root.iterdir():
        with contextlib.suppress(OSError, ValueError):
            pid_text, started_text = (task_dir / PID_FILE).read_text(encoding="ascii").split()
            pgid = int(pid_text)
            if pgid > 1 and _may_kill(pgid, started_text) and _kill_group(pgid):
                killed.append(pgid)
                logger.warning("killed process group %d left by a previous agent (%s)", pgid, task_dir.name)
        if remove_dirs and task_dir.is_dir():
            shutil.rmtree(task_dir, ignore_errors=True)
    return killed


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
        ticks = _start_ticks(pgid)
        return ticks is None or ticks == int(started[1:])  # None: no such process
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
