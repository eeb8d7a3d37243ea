"""Process groups left behind by a previous agent that died without cleaning up.

At spawn, the leader's pid and start time are written into the attempt's task directory. When the
agent starts again with the same working directory, every recorded group that still exists is killed
before registration: the server has meanwhile declared those attempts lost and may run them elsewhere,
and they must not run twice. The start time guards against pid reuse: a live process with the recorded
pid but another start time is someone else and is left alone; when no process has the recorded pid,
any group with that id can only be the old task's leftovers (a group id is the pid of its creator).
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


def record_leader(task_dir: Path, pid: int) -> None:
    """Write ``pid`` and its start time into ``task_dir`` (best effort; a failure is only logged)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return  # already gone: nothing to reap later
    try:
        (task_dir / PID_FILE).write_text(f"{pid} {started!r}\n", encoding="ascii")
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
        pid_file = task_dir / PID_FILE
        with contextlib.suppress(OSError, ValueError):
            pid_text, started_text = pid_file.read_text(encoding="ascii").split()
            pgid, started = int(pid_text), float(started_text)
            if pgid > 1 and _may_kill(pgid, started) and _kill_group(pgid):
                killed.append(pgid)
                logger.warning("killed process group %d left by a previous agent (%s)", pgid, task_dir.name)
        if remove_dirs and task_dir.is_dir():
            shutil.rmtree(task_dir, ignore_errors=True)
    return killed


def _may_kill(pgid: int, started: float) -> bool:
    try:
        leader_started = psutil.Process(pgid).create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    return abs(leader_started - started) < _START_TIME_TOLERANCE_SECS


def _kill_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
