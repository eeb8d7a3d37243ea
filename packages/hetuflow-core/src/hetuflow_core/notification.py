"""Notifications and the audit trail: what a job asks to be told about, and the records the API lists.

A job's ``JobConfig.notify`` names targets (configured on the server: webhooks and email recipients) for the
outcomes of its tasks. Each event that matches a rule becomes one ``NotificationDelivery``; every change made
through the API becomes one ``AuditEntry``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from hetuflow_core.enums import NotificationEvent, NotificationStatus, TokenScope
from hetuflow_core.types import Name

__all__ = ["AuditEntry", "NotificationDelivery", "NotifyRule"]


class NotifyRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tell ``target`` (a notification target of the server's configuration) about the outcomes in ``on``."""

    target: Annotated[
        Name, msgspec.Meta(description="Name of a target in the server's [notifications] config")
    ]
    on: Annotated[
        list[NotificationEvent],
        msgspec.Meta(min_length=1, max_length=5, description="The outcomes this target hears about"),
    ]


class NotificationDelivery(msgspec.Struct, kw_only=True):
    """One notification of one event to one target, and how its delivery went."""

    id: int
    event: NotificationEvent
    target: str
    job_id: UUID | None
    task_id: UUID | None
    status: NotificationStatus
    attempts: int
    """Delivery attempts made so far."""
    response_code: int | None
    """HTTP status of the last webhook attempt (SMTP reply code for email)."""
    error: str | None
    """Why the last attempt failed."""
    payload: dict[str, Any]
    """The JSON body sent to webhooks (see the API documentation)."""
    created_at: datetime
    next_attempt_at: datetime
    completed_at: datetime | None


class AuditEntry(msgspec.Struct, kw_only=True):
    """One change made through the API: who, when, what, and a summary without secret values."""

    id: int
    at: datetime
    actor: str
    """The name of the token the change was made with."""
    actor_jti: UUID | None
    scope: TokenScope
    action: str
    """The operation id (``create_job``, ``cancel_task`` ...)."""
    method: str
    path: str
    target: str
    """The resource changed, as its API path (``/jobs/<id>``)."""
    summary: dict[str, Any]
    """The request body, with secret values (environment variables, secrets, passwords) replaced."""
