"""Resource use of whole process trees, measured with psutil.

A task's tree is its leader plus all descendants. On Linux the tree is walked through
``/proc/<pid>/task/<tid>/children``, which costs a few reads per member instead of a scan of the whole
process table (on a busy host that scan is milliseconds of GIL-holding Python per sample); elsewhere,
or if the kernel lacks those files, psutil's ``children(recursive=True)`` does the walk. Per member,
RSS and CPU time are read with psutil; a process's CPU time includes the children it already reaped, so
dead descendants keep counting as long as someone in the tree waited for them. RSS of the tree is the
plain sum (shared pages count once per process, as ``ps`` shows them), the conservative choice for a
memory limit. A process that re-parented itself to init (double fork) is not measured, but it is still
killed with the group when the task ends.

``sample_trees`` blocks on ``/proc`` reads; the process manager runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator
from typing import NamedTuple

import psutil

__all__ = ["TreeUsage", "sample_trees"]

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


class TreeUsage(NamedTuple):
    """One sample of one task's process tree."""

    rss_bytes: int
    cpu_secs: float
    processes: int


def sample_trees(roots: Collection[int]) -> dict[int, TreeUsage]:
    """Sample the trees led by ``roots``; roots that are gone are left out."""
    usage: dict[int, TreeUsage] = {}
    for root in roots:
        tree = _tree(root)
        if tree is not None:
            usage[root] = tree
    return usage


def _tree(root: int) -> TreeUsage | None:
    try:
        leader = psutil.Process(root)
        members = [leader, *_descendants(leader)]
    except _GONE:
        return None
    rss = 0
    cpu = 0.0
    count = 0
    for proc in members:
        try:
            with proc.oneshot():
                memory = proc.memory_info()
                times = proc.cpu_times()
        except _GONE:
            continue  # exited between the walk and the read
        rss += memory.rss
        cpu += times.user + times.system + times.children_user + times.children_system
        count += 1
    return TreeUsage(rss, cpu, count) if count else None


def _descendants(leader: psutil.Process) -> list[psutil.Process]:
    pids = _proc_children(leader.pid)
    if pids is None:
        return leader.children(recursive=True)
    found: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(*_GONE):
            found.append(psutil.Process(pid))
    return found


def _proc_children(root: int) -> list[int] | None:
    """All descendants of ``root`` from ``/proc/*/task/*/children``; None where those files do not exist."""
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        return None
    found: list[int] = []
    seen = {root}
    stack = [root]
    while stack:
        for child in _children_of(stack.pop()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                stack.append(child)
    return found


def _children_of(pid: int) -> Iterator[int]:
    # Children belong to the thread that forked them, so every thread's list is read.
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as listing:
                text = listing.read()
        except OSError:
            continue
        yield from (int(child) for child in text.split())
