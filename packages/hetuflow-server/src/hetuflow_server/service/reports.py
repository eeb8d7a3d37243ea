"""Applying status reports of task instances: the data side of the report batcher and of lost attempts.

Reports are applied in batches: the instance transitions of one round in one statement, then the task
transitions they imply — for the task's *current* instance only, so a late report for an attempt that is no
longer current is stored beside it (``reported_status``) and never moves the task. Reports of one instance are
applied in ``seq`` order, one round per report, many instances per round. Failed, timed-out and lost attempts
become ``waiting_retry`` with the job's backoff (and jitter) while retries remain, else ``failed``. A batch
that frees capacity sends one NOTIFY on the work channel; tasks of flows that ended settle their flow runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

import msgspec

from hetuflow_core.enums import InstanceStatus, TaskStatus
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.task import Task, TaskInstance
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.service._flows import settle_flow_runs

__all__ = ["AgentReport", "ReportApplier", "ReportOutcome", "ReportResult"]


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
    task: Task | None = None


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
        applied for its agent (a resend after a reconnect) is skipped and answered None."""
        results: list[ReportResult | None] = [None] * len(reports)
        by_agent: dict[str, dict[str, int]] = defaultdict(dict)
        for position, report in enumerate(reports):
            by_agent[report.agent_id].setdefault(report.msg_id, position)  # first of any repeats in the batch
        for agent_id, positions in by_agent.items():
            fresh = await bmc.AgentMsgBmc.record(conn, agent_id, list(positions))
            todo = [position for msg_id, position in positions.items() if msg_id in fresh]
            applied = await self.apply(conn, [reports[p].data for p in todo], agent_id=agent_id)
            for position, result in zip(todo, applied, strict=True):
                results[position] = result
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
        normalised = [_normalise(report) for report in reports]
        queues: dict[UUID, list[tuple[int, TaskInstanceUpdatedData]]] = defaultdict(list)
        for position, report in enumerate(normalised):
            queues[report.instance_id].append((position, report))
        for queue in queues.values():
            queue.sort(key=lambda item: (item[1].seq, item[0]))
        results: dict[int, ReportResult] = {}
        ended: list[Task] = []
        freed = False
        depth = max((len(queue) for queue in queues.values()), default=0)
        for level in range(depth):
            batch = [queue[level] for queue in queues.values() if level < len(queue)]
            round_results, round_ended, round_freed = await self._apply_round(conn, batch, agent_id)
            results.update(round_results)
            ended.extend(round_ended)
            freed = freed or round_freed
        await settle_flow_runs(conn, ended)
        if freed:
            await notify.work_added(conn)
        return [results[position] for position in range(len(normalised))]

    async def _apply_round(
        self,
        conn: db.Connection,
        batch: Sequence[tuple[int, TaskInstanceUpdatedData]],
        agent_id: str | None,
    ) -> tuple[dict[int, ReportResult], list[Task], bool]:
        reports = [report for _, report in batch]
        applied = {
            inst.id: inst for inst in await bmc.InstanceBmc.transition_many(conn, reports, agent_id=agent_id)
        }
        rest = [report for report in reports if report.instance_id not in applied]
        existing = {
            inst.id: inst for inst in await bmc.InstanceBmc.by_ids(conn, [r.instance_id for r in rest])
        }
        late_ids = set(await bmc.InstanceBmc.record_late(conn, rest, agent_id=agent_id))

        tasks = {
            task.id: task for task in await bmc.TaskBmc.lock_many(conn, [i.task_id for i in applied.values()])
        }
        report_of = {report.instance_id: report for report in reports}
        changes: list[bmc.TaskChange] = []
        for inst in applied.values():
            task = tasks.get(inst.task_id)
            if task is None or task.instance_id != inst.id or task.status.is_final:
                continue
            change = self._task_change(task, inst, report_of[inst.id])
            if change is not None:
                changes.append(change)
        changed = {task.id: task for task in await bmc.TaskBmc.transition_many(conn, changes)}

        results: dict[int, ReportResult] = {}
        for position, report in batch:
            inst_id = report.instance_id
            if inst_id in applied:
                results[position] = ReportResult(
                    instance_id=inst_id,
                    outcome=ReportOutcome.APPLIED,
                    task=changed.get(applied[inst_id].task_id),
                )
            elif inst_id in late_ids:
                results[position] = ReportResult(instance_id=inst_id, outcome=ReportOutcome.LATE)
            elif (
                inst_id in existing
                and existing[inst_id].status is report.status
                and (agent_id is None or existing[inst_id].agent_id == agent_id)
            ):
                results[position] = ReportResult(instance_id=inst_id, outcome=ReportOutcome.DUPLICATE)
            else:
                results[position] = ReportResult(instance_id=inst_id, outcome=ReportOutcome.REFUSED)
        freed = any(inst.status.is_final for inst in applied.values())
        return results, [task for task in changed.values() if task.status.is_final], freed

    def _task_change(
        self, task: Task, inst: TaskInstance, report: TaskInstanceUpdatedData
    ) -> bmc.TaskChange | None:
        status = inst.status
        if status is InstanceStatus.RUNNING:
            return bmc.TaskChange(task_id=task.id, instance_id=inst.id, status=TaskStatus.RUNNING)
        if status is InstanceStatus.SUCCEEDED:
            return bmc.TaskChange(task_id=task.id, instance_id=inst.id, status=TaskStatus.SUCCEEDED)
        if status is InstanceStatus.CANCELLED:
            error = report.error or "cancelled on the agent"
            return bmc.TaskChange(
                task_id=task.id, instance_id=inst.id, status=TaskStatus.CANCELLED, error=error
            )
        if status in (InstanceStatus.FAILED, InstanceStatus.TIMEOUT, InstanceStatus.LOST):
            error = report.error or _describe(status, report)
            retry = task.config.retry
            if task.attempt <= retry.max_retries:
                delay = retry.delay_secs(task.attempt, self._rand())
                return bmc.TaskChange(
                    task_id=task.id,
                    instance_id=inst.id,
                    status=TaskStatus.WAITING_RETRY,
                    error=error,
                    next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                )
            return bmc.TaskChange(task_id=task.id, instance_id=inst.id, status=TaskStatus.FAILED, error=error)
        return None


def _normalise(report: TaskInstanceUpdatedData) -> TaskInstanceUpdatedData:
    """A non-zero exit code is a failure whatever the agent called it: the process's own verdict wins."""
    if report.status is InstanceStatus.SUCCEEDED and report.exit_code not in (None, 0):
        return msgspec.structs.replace(report, status=InstanceStatus.FAILED)
    return report


def _describe(status: InstanceStatus, report: TaskInstanceUpdatedData) -> str:
    if status is InstanceStatus.TIMEOUT:
        return "timed out"
    if status is InstanceStatus.LOST:
        return "the agent running it was lost"
    if report.signal is not None:
        return f"killed by signal {report.signal}"
    if report.exit_code is not None:
        return f"exit code {report.exit_code}"
    return "failed"
