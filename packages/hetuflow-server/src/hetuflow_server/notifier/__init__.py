"""The notifier: delivers queued notifications of outcomes to webhooks and email targets.

Notifications are queued by the database (triggers in the transaction of the state change, one row per event
and target); every server runs a `Notifier` that claims due rows, delivers them with bounded concurrency and
timeouts, and records each attempt. ``sign`` is the webhook signature receivers check.
"""

from __future__ import annotations

from hetuflow_server.notifier.dispatcher import Notifier
from hetuflow_server.notifier.sending import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Attempt,
    sign,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Attempt",
    "Notifier",
    "sign",
]
