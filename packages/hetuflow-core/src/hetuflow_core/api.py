"""Shapes of the REST API that are not resources: pages, filters, tokens, events and errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar
from uuid import UUID

import msgspec

from hetuflow_core.enums import TokenScope
from hetuflow_core.types import AgentId, Name

__all__ = [
    "FieldError",
    "Page",
    "Problem",
    "TaskFilter",
    "TokenCreate",
    "TokenInfo",
    "TokenIssued",
]

T = TypeVar("T")

Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class Page(msgspec.Struct, Generic[T], kw_only=True):
    """One page of a list. Pass ``next_cursor`` as ``cursor`` to get the next; ``None`` means last."""

    items: list[T]
    next_cursor: str | None


class TaskFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query parameters of ``GET /api/v1/tasks``. Every given filter must match."""

    status: list[str] = []
    job_id: UUID | None = None
    schedule_id: UUID | None = None
    flow_run_id: UUID | None = None
    agent_id: str | None = None
    scheduled_after: datetime | None = None
    scheduled_before: datetime | None = None
    order: Literal["desc", "asc"] | None = None
    """None or "desc": latest scheduled first; "asc": earliest first (what runs next)."""
    cursor: str | None = None
    limit: Limit = 100


class TokenCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/tokens``. ``agent`` tokens must name the agent id they belong to."""

    name: Name
    scope: TokenScope
    agent_id: AgentId | None = None
    ttl_secs: Annotated[int, msgspec.Meta(ge=60, le=10 * 365 * 86_400)] = 365 * 86_400


class TokenInfo(msgspec.Struct, kw_only=True):
    """What the server remembers of an issued token (never the token itself)."""

    jti: UUID
    name: str
    scope: TokenScope
    subject: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class TokenIssued(msgspec.Struct, kw_only=True):
    """A newly issued token; ``token`` is shown once and cannot be recovered."""

    token: str
    info: TokenInfo


class FieldError(msgspec.Struct, kw_only=True):
    """One invalid field: its JSON path (``$.config.timeout_secs``) and why."""

    path: str
    message: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, the body of every API error (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None
