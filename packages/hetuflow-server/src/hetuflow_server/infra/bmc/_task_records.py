"""The records of ``sched_task`` statements besides `Task`: what TaskBmc takes, and the views it returns."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import msgspec

from hetuflow_core.enums import TaskStatus, TriggerRule
from hetuflow_core.job import JobConfig
from hetuflow_core.types import Parameters

__all__ = [
    "AgentProfile",
    "DaemonRun",
    "LateSlot",
    "LiveRun",
    "ManualRun",
    "NewTask",
    "TaskChange",
    "TaskOrigin",
    "TaskOutcome",
]


class TaskOrigin(StrEnum):
    """What created a task (stored in ``sched_task.origin``)."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    EVENT = "event"
    FLOW = "flow"
    RETRY = "retry"
    DAEMON = "daemon"


class NewTask(msgspec.Struct, kw_only=True, frozen=True):
    """A task to insert."""

    id: UUID
    job_id: UUID
    origin: TaskOrigin
    scheduled_at: datetime
    config: JobConfig
    priority: int = 0
    parameters: Parameters = {}
    schedule_id: UUID | None = None
    flow_run_id: UUID | None = None
    flow_step: str | None = None
    retry_of: UUID | None = None
    depends_on: list[UUID] = []
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS


class ManualRun(msgspec.Struct, kw_only=True, frozen=True):
    """One task of a trigger, as the trigger statement takes it (``priority`` None: the config's)."""

    id: UUID
    scheduled_at: datetime
    priority: int | None
    parameters: Parameters


class TaskOutcome(msgspec.Struct, kw_only=True, frozen=True):
    """A task as a status change left it: what the callers of a change read (not the whole row)."""

    id: UUID
    status: TaskStatus
    error: str | None
    instance_id: UUID | None
    agent_id: str | None
    flow_run_id: UUID | None
    next_attempt_at: datetime | None
    origin: TaskOrigin | None = None
    """What created the task, where the statement reads it (None: not read)."""


class TaskChange(msgspec.Struct, kw_only=True, frozen=True):
    """One status change of a batch; ``instance_id`` fences it to that current attempt."""

    task_id: UUID
    status: TaskStatus
    instance_id: UUID | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    via_running: bool = False
    """From ``dispatched`` through ``running`` to ``status`` in one change (a start and an end reported
    together)."""


class AgentProfile(msgspec.Struct, kw_only=True, frozen=True):
    """What agents can run, as the claim query matches it: their labels and command kinds, and the ids of the
    agents sharing them (a pinned task matches only a profile listing its agent)."""

    labels: dict[str, str]
    commands: list[str]
    agent_ids: list[str] = []


class LateSlot(msgspec.Struct, kw_only=True, frozen=True):
    """A slot task judged late, and which later slots of its schedule count as late too: due before
    ``cutoff``, and either due before ``unwatched_before`` or planned more than ``tolerance_secs`` after
    their time (the others only wait for an agent)."""

    task_id: UUID
    schedule_id: UUID
    scheduled_at: datetime
    cutoff: datetime
    unwatched_before: datetime
    tolerance_secs: float
    pin: str | None = None
    """The agent the task is pinned to: only later slots with the same pin count."""


class LiveRun(msgspec.Struct, kw_only=True, frozen=True):
    """A run of a schedule that is going now (its task is dispatched or running)."""

    task_id: UUID
    schedule_id: UUID
    scheduled_at: datetime
    instance_id: UUID | None
    agent_id: str | None
    pin: str | None = None
    """The agent the task is pinned to (``config.target.agent_id``), if any."""


class DaemonRun(msgspec.Struct, kw_only=True, frozen=True):
    """One past or present run of a daemon: when it was due, when its process started and when it ended."""

    task_id: UUID
    status: TaskStatus
    scheduled_at: datetime
    completed_at: datetime | None
    started_at: datetime | None
