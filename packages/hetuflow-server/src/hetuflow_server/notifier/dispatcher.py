"""``Notifier``: the loop that claims due notifications and delivers them, on every server.

Claims take rows with FOR UPDATE SKIP LOCKED and mark them ``sending`` under a lease, so servers never send
the same notification twice (a server that dies mid-delivery leaves its rows to be claimed again once the
lease lapses: a receiver may then see a delivery id twice). Deliveries run as tasks, at most ``concurrency``
at once, each bounded by its target's timeout: a slow or dead endpoint holds only its own slot, never the
loop. A failed attempt is retried with doubling backoff until the target's ``max_attempts``, then recorded
``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx

from hetuflow_core.enums import NotificationStatus
from hetuflow_server.config import NotificationsSection
from hetuflow_server.infra import bmc
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.loops import LoopFactory, raise_if_cancelled
from hetuflow_server.notifier import sending

__all__ = ["IDLE_POLL_SECS", "MAX_BACKOFF_SECS", "Notifier"]

logger = logging.getLogger(__name__)

IDLE_POLL_SECS: Final = 30.0
"""Longest sleep between two looks at the outbox (a NOTIFY wakes the loop sooner, so does a due retry)."""
MIN_SLEEP_SECS: Final = 0.05
MAX_BACKOFF_SECS: Final = 3600.0
LEASE_MARGIN_SECS: Final = 30.0
"""Added to the longest target timeout: how long a claim stays with its server before others may take it."""


class Notifier:
    """Delivers the notification outbox (see the module docstring); ``on_notify`` wakes it."""

    def __init__(
        self, db: ModelManager, settings: NotificationsSection, *, idle_poll_secs: float = IDLE_POLL_SECS
    ) -> None:
        self._db = db
        self._settings = settings
        self._idle_poll_secs = idle_poll_secs
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        timeouts = [target.timeout_secs for target in settings.targets.values()]
        self._lease_secs = 2 * max(timeouts, default=0.0) + LEASE_MARGIN_SECS
        self._client: httpx.AsyncClient | None = None

    async def on_notify(self, payload: str) -> None:
        """A notification was queued (LISTEN callback): look at the outbox now."""
        self._wake.set()

    def loop(self) -> LoopFactory:
        """The background loop; stopping it cancels the deliveries in flight (their leases lapse)."""

        async def run() -> None:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                self._client = client
                try:
                    while True:
                        sleep_secs = self._idle_poll_secs
                        try:
                            sleep_secs = await self.dispatch_once()
                        except Exception:
                            logger.exception("notifier: dispatch failed")
                        raise_if_cancelled()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(sleep_secs):
                                await self._wake.wait()
                        self._wake.clear()
                finally:
                    await self._cancel_inflight()
                    self._client = None

        return run

    async def dispatch_once(self) -> float:
        """Claim what is due, up to the free delivery slots, and start delivering it; the seconds until the
        loop should look again."""
        free = self._settings.concurrency - len(self._inflight)
        if free <= 0:
            return self._idle_poll_secs  # a finishing delivery wakes the loop
        async with self._db.transaction() as conn:
            claimed = await bmc.NotificationBmc.claim(conn, limit=free, lease_secs=self._lease_secs)
            due_at = None if len(claimed) == free else await bmc.NotificationBmc.next_due(conn)
        for notification in claimed:
            task = asyncio.create_task(
                self._deliver(notification), name=f"hetuflow:notification:{notification.id}"
            )
            self._inflight.add(task)
            task.add_done_callback(self._finished)
        if len(claimed) == free:
            return MIN_SLEEP_SECS  # more may be due: look again as soon as a slot frees up
        if due_at is None:
            return self._idle_poll_secs
        wait = (due_at - datetime.now(UTC)).total_seconds()
        return min(max(wait, MIN_SLEEP_SECS), self._idle_poll_secs)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free again
        if not task.cancelled() and task.exception() is not None:
            logger.error("notifier: delivery task failed", exc_info=task.exception())

    async def _cancel_inflight(self) -> None:
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, notification: bmc.ClaimedNotification) -> None:
        attempt, max_attempts, backoff = await self._attempt(notification)
        if attempt.ok:
            status, next_at = NotificationStatus.DELIVERED, None
        elif notification.attempts >= max_attempts:
            status, next_at = NotificationStatus.FAILED, None
        else:
            delay = min(backoff * 2 ** (notification.attempts - 1), MAX_BACKOFF_SECS)
            status, next_at = NotificationStatus.PENDING, datetime.now(UTC) + timedelta(seconds=delay)
        async with self._db.transaction() as conn:
            recorded = await bmc.NotificationBmc.finish(
                conn,
                notification.id,
                attempts=notification.attempts,
                status=status,
                response_code=attempt.response_code,
                error=attempt.error,
                next_attempt_at=next_at,
            )
        extra = {"notification_id": notification.id, "target": notification.target}
        if not recorded:
            logger.warning(
                "notification %d was claimed again before its outcome was recorded",
                notification.id,
                extra=extra,
            )
        elif status is NotificationStatus.FAILED:
            logger.warning(
                "notification %d to %s failed for good: %s",
                notification.id,
                notification.target,
                attempt.error,
                extra=extra,
            )

    async def _attempt(self, notification: bmc.ClaimedNotification) -> tuple[sending.Attempt, int, float]:
        """One attempt, never raising: its outcome, the target's ``max_attempts`` and its first backoff."""
        target = self._settings.targets.get(notification.target)
        if target is None:
            error = f"no notification target named {notification.target!r} in this server's configuration"
            return sending.Attempt(ok=False, error=error), 1, 0.0
        try:
            async with asyncio.timeout(target.timeout_secs):
                if target.kind == "email":
                    attempt = await sending.send_email(self._settings, target, notification)
                else:
                    assert self._client is not None  # set while the loop runs
                    attempt = await sending.send_webhook(self._client, target, notification)
        except TimeoutError:
            attempt = sending.Attempt(ok=False, error=f"no answer within {target.timeout_secs:g} s")
        return attempt, target.max_attempts, target.retry_backoff_secs
