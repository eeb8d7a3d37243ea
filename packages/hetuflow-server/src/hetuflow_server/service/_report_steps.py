"""The order in which a batch of status reports is applied: per instance in ``seq`` order, one step per round.

Each instance's reports form a queue sorted by ``seq``; every round takes the head of every queue and applies
them all with one statement per table. A queue that starts with ``running`` followed by the attempt's end (the
common case for a short task: both arrive in one batch) makes one merged step, dispatched → running → end in
one row change per table instead of two; when the attempt turns out not to be dispatched any more, the two
reports are applied one by one instead, so every report gets the outcome it would have had on its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple
from uuid import UUID

from hetuflow_core.enums import InstanceStatus
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_server.infra import bmc, transitions

__all__ = ["Step", "StepQueues", "report_row"]


class Step(NamedTuple):
    """What one round applies to one instance: the caller's positions of the reports and the row of them."""

    positions: tuple[int, ...]
    row: bmc.ReportRow


class _Queued(NamedTuple):
    position: int
    seq: int
    row: bmc.ReportRow


class StepQueues:
    """The reports of a batch by instance; ``next_round`` gives one step per instance still waiting."""

    def __init__(self, reports: Iterable[tuple[TaskInstanceUpdatedData, str | None]]) -> None:
        by_instance: dict[UUID, list[_Queued]] = {}
        for position, (report, agent_id) in enumerate(reports):
            queued = _Queued(position, report.seq, report_row(report, agent_id))
            by_instance.setdefault(report.instance_id, []).append(queued)
        self._queues = {
            instance_id: deque(sorted(queue, key=lambda item: (item.seq, item.position)))
            for instance_id, queue in by_instance.items()
        }
        self._apart: set[UUID] = set()

    def __bool__(self) -> bool:
        return bool(self._queues)

    def next_round(self) -> list[Step]:
        """The head step of every queue: a merged ``running`` + end where possible."""
        steps: list[Step] = []
        for instance_id, queue in self._queues.items():
            head = queue[0]
            if instance_id not in self._apart and len(queue) > 1 and _mergeable(head.row, queue[1].row):
                tail = queue[1]
                steps.append(Step((head.position, tail.position), _merged(head.row, tail.row)))
            else:
                steps.append(Step((head.position,), head.row))
        return steps

    def done(self, steps: Sequence[Step], applied_merged: set[UUID]) -> None:
        """Drop what ``steps`` applied; a merged step not in ``applied_merged`` is retried one report at a
        time."""
        for step in steps:
            instance_id = step.row.instance_id
            if step.row.via_running and instance_id not in applied_merged:
                self._apart.add(instance_id)
                continue
            queue = self._queues[instance_id]
            for _ in step.positions:
                queue.popleft()
            if not queue:
                del self._queues[instance_id]


def report_row(report: TaskInstanceUpdatedData, agent_id: str | None) -> bmc.ReportRow:
    """The row of ``report`` by ``agent_id``. A non-zero exit code is a failure whatever the agent called it:
    the process's own verdict wins."""
    status = report.status
    if status is InstanceStatus.SUCCEEDED and report.exit_code not in (None, 0):
        status = InstanceStatus.FAILED
    return bmc.ReportRow(
        instance_id=report.instance_id,
        agent_id=agent_id,
        status=status,
        at=report.at,
        exit_code=report.exit_code,
        signal=report.signal,
        error=report.error,
        output=report.output,
        output_truncated=report.output_truncated,
        metrics=report.metrics,
    )


def _mergeable(first: bmc.ReportRow, then: bmc.ReportRow) -> bool:
    return (
        first.status is InstanceStatus.RUNNING
        and then.status.is_final
        and then.agent_id == first.agent_id
        and transitions.is_allowed(InstanceStatus.RUNNING, then.status)
    )


def _merged(running: bmc.ReportRow, end: bmc.ReportRow) -> bmc.ReportRow:
    """One row for ``running`` then ``end``: each field as applying both in turn would leave it."""
    return bmc.ReportRow(
        instance_id=end.instance_id,
        agent_id=end.agent_id,
        status=end.status,
        at=end.at,
        exit_code=end.exit_code if end.exit_code is not None else running.exit_code,
        signal=end.signal if end.signal is not None else running.signal,
        error=end.error if end.error is not None else running.error,
        output=end.output or running.output,
        output_truncated=end.output_truncated or running.output_truncated,
        metrics=end.metrics if end.metrics is not None else running.metrics,
        via_running=True,
        running_at=running.at,
    )
