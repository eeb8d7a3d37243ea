"""Resource use of whole process trees, measured with psutil.

One sample covers every running task at once: the process table is read a single time, then each
task's tree is the leader plus all its descendants plus anything still in its process group (a
double-forked daemon is re-parented to init but keeps the group). Per process, RSS and CPU time are
read; a process's CPU time includes the children it already reaped, so dead descendants keep counting
as long as someone in the tree waited for them. RSS of the tree is the plain sum (shared pages count
once per process, as ``ps`` shows them), the conservative choice for a memory limit.

``sample_trees`` blocks on ``/proc`` reads; the process manager runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Collection
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
    """Sample the trees led by ``roots`` (process-group leaders); roots that are gone are left out."""
    if not roots:
        return {}
    wanted = set(roots)
    children: defaultdict[int, list[int]] = defaultdict(list)
    table: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is None:
            continue
        table[proc.pid] = proc
        children[ppid].append(proc.pid)

    members: dict[int, set[int]] = {root: _descendants(root, children) for root in wanted if root in table}
    claimed = set().union(*members.values()) if members else set()
    for pid in table.keys() - claimed:
        with contextlib.suppress(OSError):
            pgid = os.getpgid(pid)
            if pgid in members:
                members[pgid].add(pid)

    usage: dict[int, TreeUsage] = {}
    for root, pids in members.items():
        rss = 0
        cpu = 0.0
        count = 0
        for pid in pids:
            try:
                with table[pid].oneshot():
                    rss += table[pid].memory_info().rss
                    times = table[pid].cpu_times()
            except _GONE:
                continue
            cpu += times.user + times.system + times.children_user + times.children_system
            count += 1
        usage[root] = TreeUsage(rss, cpu, count)
    return usage


def _descendants(root: int, children: dict[int, list[int]]) -> set[int]:
    found = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found
