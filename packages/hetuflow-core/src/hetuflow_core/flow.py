"""Flows: a DAG of job steps run together, and their runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from hetuflow_core.enums import FlowRunStatus, JobStatus
from hetuflow_core.types import Name, Parameters

__all__ = ["Flow", "FlowCreate", "FlowRun", "FlowRunCreate", "FlowStep"]


class FlowStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One node of a flow: a job with parameter overrides, run after the steps it depends on."""

    name: Name
    job_id: UUID
    parameters: Parameters = {}
    depends_on: Annotated[list[Name], msgspec.Meta(max_length=256)] = []


class Flow(msgspec.Struct, kw_only=True):
    """A stored flow."""

    id: UUID
    name: str
    description: str
    status: JobStatus
    steps: list[FlowStep]
    created_at: datetime
    updated_at: datetime


class FlowCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/flows``."""

    name: Name
    description: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    steps: Annotated[list[FlowStep], msgspec.Meta(min_length=1, max_length=1000)]


class FlowRun(msgspec.Struct, kw_only=True):
    """One run of a flow."""

    id: UUID
    flow_id: UUID
    status: FlowRunStatus
    parameters: Parameters
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class FlowRunCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/flows/{id}/run``: parameters handed to every step (step overrides win)."""

    parameters: Parameters = {}
