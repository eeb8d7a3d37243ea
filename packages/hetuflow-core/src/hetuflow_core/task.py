"""Tasks (planned executions), their instances (attempts on agents) and their logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from uuid import UUID

import msgspec

from hetuflow_core.enums import InstanceStatus, LogStream, TaskStatus
from hetuflow_core.job import JobConfig
from hetuflow_core.types import Count, Parameters, Priority

__all__ = [
    "MAX_TRIGGER_RUNS",
    "InstanceMetrics",
    "Task",
    "TaskInstance",
    "TaskLogEntry",
    "TaskLogPage",
    "TaskTrigger",
    "TriggerResult",
    "TriggerRun",
]


class InstanceMetrics(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Resource use of one attempt, measured by the agent over the whole process tree."""

    peak_rss_bytes: Count = 0
    cpu_secs: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    duration_secs: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class Task(msgspec.Struct, kw_only=True):
    """One planned execution of a job."""

    id: UUID
    job_id: UUID
    schedule_id: UUID | None
    flow_run_id: UUID | None
    scheduled_at: datetime
    priority: int
    parameters: Parameters
    config: JobConfig
    status: TaskStatus
    attempt: int
    next_attempt_at: datetime | None
    depends_on: list[UUID]
    instance_id: UUID | None
    agent_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    flow_step: str | None = None
    """The step of its flow run this task runs (``flow_run_id``), if any."""


class TaskInstance(msgspec.Struct, kw_only=True):
    """One attempt of a task on one agent; its id is the fencing token of the attempt."""

    id: UUID
    task_id: UUID
    job_id: UUID
    agent_id: str
    attempt: int
    status: InstanceStatus
    dispatched_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    exit_code: int | None
    signal: int | None
    error: str | None
    output: str
    output_truncated: bool
    metrics: InstanceMetrics | None


class TaskLogEntry(msgspec.Struct, kw_only=True):
    """One stored log chunk, decoded as UTF-8 with invalid bytes replaced."""

    instance_id: UUID
    stream: LogStream
    seq: int
    ts: datetime
    content: str


class TaskLogPage(msgspec.Struct, kw_only=True):
    """Log chunks after a sequence number; pass ``next_after_seq`` back to continue."""

    items: list[TaskLogEntry]
    next_after_seq: int


MAX_TRIGGER_RUNS: Final = 10_000
"""Most tasks one trigger request asks for (``count``, or the length of ``runs``)."""


class TriggerRun(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One task of a bulk trigger; a field left out takes the trigger's own value."""

    parameters: Parameters | msgspec.UnsetType = msgspec.UNSET
    scheduled_at: datetime | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType | None = msgspec.UNSET


class TaskTrigger(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/jobs/{id}/trigger``: run now (or at ``scheduled_at``) with parameters.

    One task by default; ``count`` makes that many alike, ``runs`` one per entry, whose fields override the
    trigger's (``count`` and ``runs`` exclude each other). All of them are made in one transaction.
    """

    parameters: Parameters = {}
    scheduled_at: datetime | None = None
    priority: Priority | None = None
    count: (
        Annotated[
            int,
            msgspec.Meta(ge=1, le=MAX_TRIGGER_RUNS, description="How many tasks to create (not with runs)"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    runs: (
        Annotated[
            list[TriggerRun],
            msgspec.Meta(
                min_length=1, max_length=MAX_TRIGGER_RUNS, description="One task per entry (not with count)"
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class TriggerResult(msgspec.Struct, kw_only=True):
    """The tasks created by a trigger or an event."""

    task_ids: list[UUID]
