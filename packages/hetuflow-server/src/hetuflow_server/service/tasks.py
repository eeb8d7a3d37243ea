"""TaskService and InstanceService: list, read, cancel and retry tasks; read attempts and their logs.

Retry never reopens a task: final states are final, so an ended task's history never changes. Retrying a
failed, cancelled or skipped task creates a new task (origin ``retry``, ``retry_of`` = the original) of the
same job with the same parameters and priority, the job's current config, due now, outside any schedule slot.
A task pinned to an agent (a copy of a broadcast task) is retried on that same agent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from hetuflow_core.api import Page, TaskFilter
from hetuflow_core.enums import TaskStatus
from hetuflow_core.task import Task, TaskInstance, TaskLogPage
from hetuflow_server.errors import IllegalTransition, InvalidInput, NotFound
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service import new_tasks
from hetuflow_server.service._flows import settle_flow_runs
from hetuflow_server.service._paging import decode_time_id_cursor, read_page
from hetuflow_server.service._validation import invalid, revalidate

__all__ = ["CancelOutcome", "InstanceService", "TaskService"]

_RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED})
_ON_AGENT = frozenset({TaskStatus.DISPATCHED, TaskStatus.RUNNING})
DEFAULT_LOG_LIMIT = 1000
MAX_LOG_LIMIT = 10_000
MAX_LOG_PAGE_BYTES = 1024 * 1024
"""Log content one page carries at most (one chunk when a single chunk is larger): a page is bounded in
bytes as well as in chunks, whatever ``limit`` asks for."""


class CancelOutcome(msgspec.Struct, kw_only=True):
    """A cancelled task and, when it was on an agent, the attempt that agent was told to kill."""

    task: Task
    instance_id: UUID | None = None
    agent_id: str | None = None


class TaskService:
    """Tasks: planned executions of jobs."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def list(self, filt: TaskFilter) -> Page[Task]:
        """A page of tasks matching every given filter, newest scheduled first (``order="asc"``: earliest
        first)."""
        filt = revalidate(filt, TaskFilter)
        statuses: list[TaskStatus] = []
        for index, value in enumerate(filt.status):
            try:
                statuses.append(TaskStatus(value))
            except ValueError:
                choices = ", ".join(s.value for s in TaskStatus)
                raise invalid(
                    f"$.status[{index}]", f"unknown status {value!r}; expected one of {choices}"
                ) from None
        for field in ("scheduled_after", "scheduled_before"):
            moment = getattr(filt, field)
            if moment is not None and moment.tzinfo is None:
                raise invalid(f"$.{field}", "needs a UTC offset")

        def fetch(conn: db.Connection, after: tuple[datetime, UUID] | None, n: int) -> Awaitable[list[Task]]:
            return bmc.TaskBmc.select_page(
                conn,
                statuses=statuses,
                job_id=filt.job_id,
                schedule_id=filt.schedule_id,
                flow_run_id=filt.flow_run_id,
                agent_id=filt.agent_id,
                scheduled_after=filt.scheduled_after,
                scheduled_before=filt.scheduled_before,
                ascending=filt.order == "asc",
                cursor=after,
                limit=n,
            )

        return await read_page(
            self._db,
            filt.cursor,
            filt.limit,
            decode=decode_time_id_cursor,
            fetch=fetch,
            key=lambda task: (task.scheduled_at, task.id),
        )

    async def get(self, task_id: UUID) -> Task:
        """The task, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.TaskBmc.get(conn, task_id)

    async def cancel(
        self, task_id: UUID, *, by: str | None = None, reason: str | None = None
    ) -> CancelOutcome:
        """pending|dispatched|running|waiting_retry → cancelled.

        When the task was on an agent, a cancel command for its current instance is published on
        ``AGENT_CMD_CHANNEL`` in the same transaction; the server holding that agent's connection forwards it.
        The instance itself ends when the agent reports (or when the agent is declared lost).
        IllegalTransition when the task already ended.
        """
        detail = reason or (f"cancelled by {by}" if by else "cancelled")
        async with self._db.transaction() as conn:
            changed = await bmc.TaskBmc.transition(conn, task_id, TaskStatus.CANCELLED, error=detail)
            if changed is None:
                current = await bmc.TaskBmc.get(conn, task_id)
                raise IllegalTransition(f"task {task_id} is {current.status}; it cannot be cancelled")
            task, previous = changed
            outcome = CancelOutcome(task=task)
            if previous in _ON_AGENT and task.instance_id is not None and task.agent_id is not None:
                outcome = CancelOutcome(task=task, instance_id=task.instance_id, agent_id=task.agent_id)
                await notify.cancel_on_agent(
                    conn, agent_id=task.agent_id, instance_id=task.instance_id, reason=detail
                )
            await settle_flow_runs(conn, [task])
        return outcome

    async def retry(self, task_id: UUID, *, by: str | None = None) -> Task:
        """A new task re-running a failed, cancelled or skipped one (see the module docstring)."""
        async with self._db.transaction() as conn:
            original = await bmc.TaskBmc.get(conn, task_id)
            if original.status not in _RETRYABLE:
                raise IllegalTransition(
                    f"task {task_id} is {original.status}; only failed, cancelled, skipped tasks retry"
                )
            try:
                job = await bmc.JobBmc.get(conn, original.job_id, lock=True)
            except NotFound:
                raise IllegalTransition(f"the job of task {task_id} was deleted") from None
            new = new_tasks.new_task(
                job.id,
                # The copy of a broadcast task re-runs where it ran, not on every agent again.
                new_tasks.pinned(job.config, original.config.target.agent_id),
                origin=bmc.TaskOrigin.RETRY,
                scheduled_at=datetime.now(UTC),
                parameters=original.parameters,
                priority=original.priority,
                retry_of=original.id,
            )
            (created,) = await bmc.TaskBmc.insert_many(conn, [new], by=by)
            await notify.work_added(conn)
        return created

    async def list_instances(self, task_id: UUID) -> Sequence[TaskInstance]:
        """Every attempt of the task, first to last; NotFound for an unknown task."""
        async with self._db.transaction() as conn:
            await bmc.TaskBmc.get(conn, task_id)
            return await bmc.InstanceBmc.of_task(conn, task_id)


class InstanceService:
    """Task instances (attempts) and their logs."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def get(self, instance_id: UUID) -> TaskInstance:
        """The instance, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.InstanceBmc.get(conn, instance_id)

    async def logs(
        self, instance_id: UUID, *, after_seq: int = 0, limit: int = DEFAULT_LOG_LIMIT
    ) -> TaskLogPage:
        """Log chunks of the attempt in arrival order after the cursor ``after_seq``.

        ``after_seq`` is a position in the attempt's log, not a chunk's per-stream ``seq``: start at 0 and
        pass ``next_after_seq`` back to continue (it stays the same when nothing new arrived). A page holds at
        most ``limit`` chunks and about ``MAX_LOG_PAGE_BYTES`` of content.
        """
        if after_seq < 0:
            raise invalid("$.after_seq", "must be 0 or more")
        if not 1 <= limit <= MAX_LOG_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LOG_LIMIT}")
        async with self._db.transaction() as conn:
            await bmc.InstanceBmc.get(conn, instance_id)
            chunks = await bmc.LogBmc.read(
                conn, instance_id, after_position=after_seq, limit=limit, max_bytes=MAX_LOG_PAGE_BYTES
            )
        next_after = chunks[-1].position if chunks else after_seq
        return TaskLogPage(items=[chunk.entry for chunk in chunks], next_after_seq=next_after)
