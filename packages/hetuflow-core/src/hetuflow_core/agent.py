"""Agents (worker processes) and servers (coordinator processes) as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from hetuflow_core.enums import AgentStatus, CommandKind, ServerStatus
from hetuflow_core.types import INT32_MAX, Labels

__all__ = ["Agent", "AgentCapabilities", "AgentMetrics", "AgentUpdate", "Server"]


class AgentCapabilities(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an agent can run: command kinds whose executable it found, and how many at once."""

    commands: Annotated[list[CommandKind], msgspec.Meta(max_length=16)]
    capacity: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    version: Annotated[str, msgspec.Meta(max_length=64)] = ""
    os: Annotated[str, msgspec.Meta(max_length=64)] = ""
    arch: Annotated[str, msgspec.Meta(max_length=64)] = ""
    hostname: Annotated[str, msgspec.Meta(max_length=255)] = ""
    prefetch: (
        Annotated[
            int,
            msgspec.Meta(
                ge=0,
                le=10_000,
                description="Attempts it may hold dispatched but not started beyond its capacity",
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    """Left out of the encoded frame unless set, so that servers that do not know it accept the agent."""


class AgentMetrics(msgspec.Struct, kw_only=True):
    """Host and load figures an agent reports with each heartbeat."""

    running: Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)] = 0
    free_slots: Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)] = 0
    cpu_percent: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    memory_percent: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.0
    load1: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class Agent(msgspec.Struct, kw_only=True):
    """A registered agent."""

    id: str
    name: str
    address: str | None
    status: AgentStatus
    labels: dict[str, str]
    capabilities: AgentCapabilities
    server_id: UUID | None
    metrics: AgentMetrics | None
    last_heartbeat_at: datetime | None
    created_at: datetime
    labels_locked: bool = False
    """The labels were set by an operator: the ones the agent declares when it registers are ignored."""


class AgentUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Body of ``PATCH /api/v1/agents/{id}``: change the labels used for routing.

    Labels an operator sets are locked: the labels the agent declares when it registers are ignored from
    then on, so a reconnect neither undoes them nor lets the agent route itself other work. ``locked: false``
    hands them back to the agent: its next registration replaces them. Left out when true, so a server that
    predates the field accepts the body.
    """

    labels: Labels
    locked: Annotated[
        bool, msgspec.Meta(description="Keep these labels over those the agent declares (default true)")
    ] = True


class Server(msgspec.Struct, kw_only=True):
    """A server process sharing the database."""

    id: UUID
    name: str
    address: str | None
    status: ServerStatus
    is_leader: bool
    started_at: datetime
    last_heartbeat_at: datetime
