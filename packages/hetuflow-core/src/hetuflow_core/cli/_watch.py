"""Waiting for tasks: until they end (``run --wait``), or while printing their output live (``--follow``),
and the exit status a finished task stands for.

The exit status follows the shell's conventions, so ``hetuflow run --wait job && next`` behaves like running
the command itself: 0 when the task succeeded; the process's own exit code when it failed; 128 + N when a
signal N killed it; 124 when it hit its timeout (as ``timeout(1)`` does); 1 for anything else (cancelled,
skipped, lost, never started).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final
from uuid import UUID

import click

from hetuflow_core.cli._logstream import LogStream, StreamEnd
from hetuflow_core.client import Client
from hetuflow_core.enums import InstanceStatus, TaskStatus
from hetuflow_core.enums import LogStream as Stream
from hetuflow_core.task import Task

__all__ = [
    "EXIT_TIMEOUT",
    "WaitExpired",
    "exit_status",
    "follow_task",
    "is_final",
    "wait_task",
    "write_chunk",
]

EXIT_TIMEOUT: Final = 124
POLL_SECS: Final = 0.5
_FINAL: Final = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED})
_MAX_EXIT: Final = 255


class WaitExpired(Exception):
    """The caller's own deadline passed before the task ended."""

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is still {task.status}")
        self.task = task


def is_final(task: Task) -> bool:
    """Whether the task will not run (again) by itself."""
    return task.status in _FINAL


def _check_deadline(task: Task, deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitExpired(task)


def wait_task(
    client: Client,
    task_id: UUID,
    *,
    deadline: float | None = None,
    seen: Callable[[Task], None] | None = None,
) -> Task:
    """Poll the task until it is final (``seen`` gets each state); `WaitExpired` past ``deadline``."""
    while True:
        task = client.get_task(task_id)
        if seen is not None:
            seen(task)
        if is_final(task):
            return task
        _check_deadline(task, deadline)
        time.sleep(POLL_SECS)


def follow_task(
    client: Client,
    stream: LogStream,
    task_id: UUID,
    *,
    deadline: float | None = None,
    attempt_started: Callable[[Task], None] | None = None,
) -> Task:
    """Print the output of every attempt of the task as it runs (stdout chunks to stdout, stderr chunks to
    stderr) until the task is final; `WaitExpired` past ``deadline`` (checked between attempts)."""
    followed: set[UUID] = set()
    while True:
        task = client.get_task(task_id)
        if task.instance_id is not None and task.instance_id not in followed:
            followed.add(task.instance_id)
            if attempt_started is not None:
                attempt_started(task)
            for item in stream.follow(task.instance_id):
                if isinstance(item, StreamEnd):
                    break
                write_chunk(item.stream, item.content)
            continue
        if is_final(task):
            return task
        _check_deadline(task, deadline)
        time.sleep(POLL_SECS)


def write_chunk(stream: Stream, content: str) -> None:
    """One chunk of output where the process wrote it: stdout chunks to stdout, stderr chunks to stderr."""
    click.echo(content, nl=False, err=stream is Stream.STDERR)


def exit_status(client: Client, task: Task) -> int:
    """The exit status a final task stands for (see the module docstring)."""
    if task.status is TaskStatus.SUCCEEDED:
        return 0
    if task.status is not TaskStatus.FAILED or task.instance_id is None:
        return 1
    instance = client.get_instance(task.instance_id)
    if instance.status is InstanceStatus.TIMEOUT:
        return EXIT_TIMEOUT
    if instance.exit_code is not None and 0 < instance.exit_code <= _MAX_EXIT:
        return instance.exit_code
    if instance.signal is not None and 0 < instance.signal < _MAX_EXIT - 128:
        return 128 + instance.signal
    return 1
