"""Applying status reports of task instances: the data side of the report batcher and of lost attempts.

Reports are applied in batches, of any number of agents at once: the instance transitions of one round in
one statement (which also locks their tasks), then the task transitions they imply — for the task's
*current* instance only, so a late report for an attempt that is no longer current is stored beside it
(``reported_status``) and never moves the task. Reports of one instance are applied in ``seq`` order, one
step per round, many instances per round (``_report_steps``: a start and an end reported together are one
step). Failed, timed-out and lost attempts become ``waiting_retry`` with the job's backoff (and jitter) while
retries remain, else ``failed``. A batch that frees capacity sends one NOTIFY on the work channel; tasks of
flows that ended settle their flow runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final
from uuid import UUID

import msgspec

from hetuflow_core.enums import InstanceStatus, TaskStatus
from hetuflow_core.job import RetryPolicy
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_server.infra import bmc, db, notify, transitions
from hetuflow_server.service._flows import settle_flow_runs
from hetuflow_server.service._report_steps import Step, StepQueues

__all__ = ["MAX_REPORTED_LEAD", "AgentReport", "ReportApplier", "ReportOutcome", "ReportResult"]

MAX_REPORTED_LEAD: Final = timedelta(seconds=1)
"""How far ahead of this server's clock a reported end may count for a retry's backoff."""


class ReportOutcome(StrEnum):
    """What became of one status report."""

    APPLIED = "applied"
    """The instance moved (and the task, if the instance is its current attempt)."""
    DUPLICATE = "duplicate"
    """The instance already was in the reported state (a resend)."""
    LATE = "late"
    """The instance had already ended otherwise; the report is stored beside it, nothing moved."""
    REFUSED = "refused"
    """Unknown instance, another agent's instance, or a transition the attempt state machine forbids."""


class ReportResult(msgspec.Struct, kw_only=True):
    """The outcome of one report, with the task when it changed."""

    instance_id: UUID
    outcome: ReportOutcome
    task: bmc.TaskOutcome | None = None


class AgentReport(msgspec.Struct, kw_only=True, frozen=True):
    """A status report as an agent's frame carried it: the sender and the frame id it came under."""

    agent_id: str
    msg_id: str
    data: TaskInstanceUpdatedData


class ReportApplier:
    """Applies reports inside the caller's transaction; ``rand`` in [0, 1) scales the retry jitter."""

    def __init__(self, rand: Callable[[], float]) -> None:
        self._rand = rand

    async def apply_from_agents(
        self, conn: db.Connection, reports: Sequence[AgentReport]
    ) -> list[ReportResult | None]:
        """Apply reports of several agents, each only to its own sender's instances; a frame id already
        applied for its agent (a resend after a reconnect) is skipped and answered None. The id of a refused
        report is not kept."""
        first: dict[tuple[str, str], int] = {}
        for position, report in enumerate(reports):
            first.setdefault((report.agent_id, report.msg_id), position)  # the first of repeats in the batch
        fresh = await bmc.InstanceBmc.record_frames(conn, list(first))
        todo = [(frame, position) for frame, position in first.items() if frame in fresh]
        applied = await self._apply(conn, [(reports[p].data, reports[p].agent_id) for _, p in todo])
        results: list[ReportResult | None] = [None] * len(reports)
        refused: list[tuple[str, str]] = []
        for (frame, position), result in zip(todo, applied, strict=True):
            results[position] = result
            if result.outcome is ReportOutcome.REFUSED:
                refused.append(frame)
        await bmc.InstanceBmc.forget_frames(conn, refused)
        return results

    async def mark_lost(
        self, conn: db.Connection, instance_ids: Collection[UUID], *, reason: str
    ) -> list[ReportResult]:
        """Declare live attempts lost (a server's verdict, as a ``lost`` report of each)."""
        instances = await bmc.InstanceBmc.by_ids(conn, sorted(instance_ids))
        reports = [
            TaskInstanceUpdatedData(
                instance_id=inst.id, task_id=inst.task_id, status=InstanceStatus.LOST, error=reason
            )
            for inst in instances
            if not inst.status.is_final
        ]
        return await self.apply(conn, reports, agent_id=None)

    async def apply(
        self, conn: db.Connection, reports: Sequence[TaskInstanceUpdatedData], *, agent_id: str | None
    ) -> list[ReportResult]:
        """Apply ``reports`` of ``agent_id``'s instances (None: the server's verdicts); one result per report,
        in input order."""
        return await self._apply(conn, [(report, agent_id) for report in reports])

    async def _apply(
        self, conn: db.Connection, reports: Sequence[tuple[TaskInstanceUpdatedData, str | None]]
    ) -> list[ReportResult]:
        """Apply reports, each of its own reporter, in rounds (``_report_steps``): each instance's reports in
        ``seq`` order, every instance of the batch in each round; one NOTIFY when capacity was freed."""
        queues = StepQueues(reports)
        results: dict[int, ReportResult] = {}
        ended: list[bmc.TaskOutcome] = []
        freed = False
        while queues:
            steps = queues.next_round()
            applied, round_ended = await self._apply_round(conn, steps, results)
            queues.done(steps, {attempt.id for attempt in applied})
            ended.extend(round_ended)
            freed = freed or any(attempt.status.is_final for attempt in applied)
        await settle_flow_runs(conn, ended)
        if freed:
            # The daemon supervisor looks only when a daemon run (or a task of unknown origin) ended.
            daemons = any(task.origin in (None, bmc.TaskOrigin.DAEMON) for task in ended)
            await notify.work_added(conn, daemons=daemons)
        return [results[position] for position in range(len(reports))]

    async def _apply_round(
        self, conn: db.Connection, steps: Sequence[Step], results: dict[int, ReportResult]
    ) -> tuple[list[bmc.AppliedReport], list[bmc.TaskOutcome]]:
        """Apply one step per instance and record the outcome of each report applied (a merged step that did
        not apply is left for the next rounds); the attempts that moved and the tasks that ended."""
        rows = [step.row for step in steps]
        moved = await bmc.InstanceBmc.transition_many(conn, rows)
        applied = {attempt.id: attempt for attempt in moved}
        rest = [row for row in rows if row.instance_id not in applied and not row.via_running]
        known = await bmc.InstanceBmc.by_ids(conn, [row.instance_id for row in rest])
        existing = {inst.id: inst for inst in known}
        late_ids = set(await bmc.InstanceBmc.record_late(conn, rest))

        row_of = {row.instance_id: row for row in rows}
        changes: list[bmc.TaskChange] = []
        for attempt in moved:
            task_status = attempt.task_status
            if task_status is None or attempt.task_instance_id != attempt.id or task_status.is_final:
                continue
            change = self._task_change(attempt, row_of[attempt.id])
            if change is not None:
                changes.append(change)
        changed = {task.id: task for task in await bmc.TaskBmc.transition_many(conn, changes)}

        for step in steps:
            inst_id, row = step.row.instance_id, step.row
            if inst_id in applied:
                *started, last = step.positions
                for position in started:  # the running half of a merged step
                    results[position] = ReportResult(instance_id=inst_id, outcome=ReportOutcome.APPLIED)
                task = changed.get(applied[inst_id].task_id)
                results[last] = ReportResult(instance_id=inst_id, outcome=ReportOutcome.APPLIED, task=task)
                continue
            if row.via_running:
                continue  # applied one report at a time in the next rounds
            outcome = ReportOutcome.REFUSED
            if inst_id in late_ids:
                outcome = ReportOutcome.LATE
            elif (
                inst_id in existing
                and existing[inst_id].status is row.status
                and (row.agent_id is None or existing[inst_id].agent_id == row.agent_id)
            ):
                outcome = ReportOutcome.DUPLICATE
            results[step.positions[0]] = ReportResult(instance_id=inst_id, outcome=outcome)
        return moved, [task for task in changed.values() if task.status.is_final]

    def _task_change(self, attempt: bmc.AppliedReport, row: bmc.ReportRow) -> bmc.TaskChange | None:
        status = attempt.status
        error: str | None = None
        next_attempt_at: datetime | None = None
        if status is InstanceStatus.RUNNING:
            task_status = TaskStatus.RUNNING
        elif status is InstanceStatus.SUCCEEDED:
            task_status = TaskStatus.SUCCEEDED
        elif status is InstanceStatus.CANCELLED:
            task_status, error = TaskStatus.CANCELLED, row.error or "cancelled on the agent"
        elif status in (InstanceStatus.FAILED, InstanceStatus.TIMEOUT, InstanceStatus.LOST):
            error = row.error or _describe(status, row)
            retry = attempt.retry or RetryPolicy()
            number = attempt.task_attempt or 0
            task_status = TaskStatus.FAILED
            if number <= retry.max_retries:
                task_status = TaskStatus.WAITING_RETRY
                delay = retry.delay_secs(number, self._rand())
                next_attempt_at = _ended(row) + timedelta(seconds=delay)
        else:
            return None
        # Started and ended in one step: the task passes through running too, while it is still dispatched.
        via_running = (
            row.via_running
            and attempt.task_status is TaskStatus.DISPATCHED
            and transitions.is_allowed(TaskStatus.RUNNING, task_status)
        )
        return bmc.TaskChange(
            task_id=attempt.task_id,
            instance_id=attempt.id,
            status=task_status,
            error=error,
            next_attempt_at=next_attempt_at,
            via_running=via_running,
        )


def _ended(row: bmc.ReportRow) -> datetime:
    """When a failed attempt ended, for its retry's backoff: its end as stored (``completed_at``, the agent's
    time on the server's clock), never before this server heard of it, and never more than
    ``MAX_REPORTED_LEAD`` after that (a larger lead is a clock problem, not a reason to wait longer)."""
    now = datetime.now(UTC)
    if row.at is None:
        return now
    return min(max(now, row.at), now + MAX_REPORTED_LEAD)


def _describe(status: InstanceStatus, row: bmc.ReportRow) -> str:
    if status is InstanceStatus.TIMEOUT:
        return "timed out"
    if status is InstanceStatus.LOST:
        return "the agent running it was lost"
    if row.signal is not None:
        return f"killed by signal {row.signal}"
    if row.exit_code is not None:
        return f"exit code {row.exit_code}"
    return "failed"
