"""One delivery attempt of one notification: a signed webhook POST, or an email through the configured SMTP.

The webhook body is the notification's JSON payload with its ``delivery_id`` and ``target``. The signature
header holds ``sha256=`` and the hex HMAC-SHA256, keyed with the target's secret, of the timestamp header's
value, a ``.`` and the body: a receiver recomputes it and compares in constant time, and refuses old
timestamps to stop replays. Email goes through ``smtplib`` in a worker thread (one short session per
message; its socket timeout bounds every step).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import time
from email.message import EmailMessage
from typing import Any, Final

import httpx
import msgspec

from hetuflow_server.__about__ import __version__
from hetuflow_server.config import NotificationsSection, NotificationTarget
from hetuflow_server.infra.bmc import ClaimedNotification

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Attempt",
    "body_of",
    "send_email",
    "send_webhook",
    "sign",
]

SIGNATURE_HEADER: Final = "Hetuflow-Signature"
TIMESTAMP_HEADER: Final = "Hetuflow-Timestamp"
DELIVERY_HEADER: Final = "Hetuflow-Delivery"
EVENT_HEADER: Final = "Hetuflow-Event"
MAX_ERROR_CHARS: Final = 500


class Attempt(msgspec.Struct, kw_only=True, frozen=True):
    """How one attempt went: ``ok``, the HTTP status (SMTP code) if any, and the error when not ok."""

    ok: bool
    response_code: int | None = None
    error: str | None = None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value of ``body`` sent at ``timestamp`` (Unix seconds, as sent)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def body_of(notification: ClaimedNotification) -> dict[str, Any]:
    """The JSON document a notification sends (the webhook body; the email's attachment of facts)."""
    return {"delivery_id": notification.id, "target": notification.target, **notification.payload}


async def send_webhook(
    client: httpx.AsyncClient, target: NotificationTarget, notification: ClaimedNotification
) -> Attempt:
    """POST the notification to the target's URL; any 2xx answer delivers it."""
    assert target.url is not None  # the configuration requires it of webhook targets
    body = msgspec.json.encode(body_of(notification))
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"hetuflow-server/{__version__}",
        EVENT_HEADER: notification.event.value,
        DELIVERY_HEADER: str(notification.id),
        TIMESTAMP_HEADER: timestamp,
    }
    if target.secret is not None:
        headers[SIGNATURE_HEADER] = sign(target.secret, timestamp, body)
    try:
        response = await client.post(target.url, content=body, headers=headers, timeout=target.timeout_secs)
    except httpx.HTTPError as exc:
        return Attempt(ok=False, error=_short(f"{type(exc).__name__}: {exc}"))
    if response.is_success:
        return Attempt(ok=True, response_code=response.status_code)
    return Attempt(ok=False, response_code=response.status_code, error=_short(f"HTTP {response.status_code}"))


async def send_email(
    settings: NotificationsSection, target: NotificationTarget, notification: ClaimedNotification
) -> Attempt:
    """Send the notification as a plain-text email to the target's recipients."""
    message = _email_of(settings, target, notification)
    return await asyncio.to_thread(_smtp_send, settings, target.timeout_secs, message)


def _email_of(
    settings: NotificationsSection, target: NotificationTarget, notification: ClaimedNotification
) -> EmailMessage:
    facts = body_of(notification)
    job = f"{facts.get('job_namespace') or '?'}/{facts.get('job_name') or facts.get('job_id') or '?'}"
    message = EmailMessage()
    message["Subject"] = f"[hetuflow] {notification.event.value}: {job}"
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(target.to)
    message["Hetuflow-Delivery"] = str(notification.id)
    lines = [f"{key}: {value}" for key, value in facts.items() if value is not None]
    message.set_content("\n".join(lines) + "\n")
    return message


def _smtp_send(settings: NotificationsSection, timeout_secs: float, message: EmailMessage) -> Attempt:
    assert settings.smtp_host is not None  # the configuration requires it of email targets
    smtp_class = smtplib.SMTP_SSL if settings.smtp_ssl else smtplib.SMTP
    try:
        with smtp_class(settings.smtp_host, settings.smtp_port, timeout=timeout_secs) as smtp:
            if settings.smtp_starttls and not settings.smtp_ssl:
                smtp.starttls()
            if settings.smtp_username is not None:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            refused = smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        return Attempt(ok=False, response_code=exc.smtp_code, error=_short(f"SMTP {exc.smtp_code}: {exc}"))
    except (smtplib.SMTPException, OSError) as exc:
        return Attempt(ok=False, error=_short(f"{type(exc).__name__}: {exc}"))
    if refused:
        return Attempt(ok=False, error=_short(f"recipients refused: {', '.join(refused)}"))
    return Attempt(ok=True, response_code=250)


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"
