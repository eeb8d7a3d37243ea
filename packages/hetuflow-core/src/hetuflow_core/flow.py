"""Flows: a DAG of job steps run together, and their runs (each step's tasks and states)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from hetuflow_core.enums import ConcurrencyPolicy, FlowRunStatus, JobStatus, TaskStatus, TriggerRule
from hetuflow_core.types import Name, Parameters, Seconds

__all__ = ["Flow", "FlowCreate", "FlowRun", "FlowRunCreate", "FlowRunStep", "FlowStep", "FlowUpdate"]

Description = Annotated[str, msgspec.Meta(max_length=4096)]


class FlowStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One node of a flow: a job with parameter overrides, run after the steps it depends on."""

    name: Name
    job_id: UUID
    parameters: Parameters = {}
    depends_on: Annotated[list[Name], msgspec.Meta(max_length=256)] = []
    timeout_secs: Seconds | None = None
    """Overrides the job's ``timeout_secs`` for this step; none: the job's own."""
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    """When the step starts given how its dependencies ended (``all_done``: a cleanup step, ``one_failed``:
    an alert step); only a step with dependencies may set another rule than ``all_success``."""


Steps = Annotated[list[FlowStep], msgspec.Meta(min_length=1, max_length=1000)]


class Flow(msgspec.Struct, kw_only=True):
    """A stored flow."""

    id: UUID
    name: str
    description: str
    status: JobStatus
    concurrency: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    steps: list[FlowStep]
    created_at: datetime
    updated_at: datetime


class FlowCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/flows``."""

    name: Name
    description: Description = ""
    steps: Steps
    status: JobStatus = JobStatus.ENABLED
    concurrency: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    """What a scheduled fire does while an earlier run of the same schedule still goes (as for a job)."""


class FlowUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PATCH /api/v1/flows/{id}``: only the fields given change; ``steps`` replace the whole DAG
    (runs already started keep the steps they started with)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    steps: Steps | msgspec.UnsetType = msgspec.UNSET
    status: JobStatus | msgspec.UnsetType = msgspec.UNSET
    concurrency: ConcurrencyPolicy | msgspec.UnsetType = msgspec.UNSET


class FlowRunStep(msgspec.Struct, kw_only=True):
    """One task of a run's step (a broadcast job's step has one per agent) and how it stands."""

    name: str
    task_id: UUID
    status: TaskStatus
    agent_id: str | None
    error: str | None


class FlowRun(msgspec.Struct, kw_only=True):
    """One run of a flow."""

    id: UUID
    flow_id: UUID
    status: FlowRunStatus
    parameters: Parameters
    schedule_id: UUID | None
    """The schedule that fired this run (none: started by hand or the schedule was deleted)."""
    scheduled_at: datetime | None
    """The fire slot of a scheduled run."""
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    steps: list[FlowRunStep] = []
    """The current task of every step, in dependency order (a retried step shows its new task)."""


class FlowRunCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/flows/{id}/run``: parameters handed to every step (step overrides win)."""

    parameters: Parameters = {}
