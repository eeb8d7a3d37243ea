"""Retention on the leader: what ages out of the database is deleted a bounded batch at a time.

Every ``interval_secs`` the leader marks servers silent for ``STALE_SERVER_HEARTBEATS`` heartbeat intervals
``inactive``, deletes task log chunks older than ``retention.log_days``, audit entries older than
``retention.audit_days`` and finished notifications older than ``retention.notification_days`` (``0`` keeps
them), and forgets the ids of applied agent frames older than ``FRAME_ID_RETENTION``. Deletes run
``batch_size`` rows per statement, each in its own short transaction that first checks the lease
(``Leadership.fence``): a backlog never holds long locks, and a server that lost the lease stops at its next
batch. All of it is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

import msgspec

from hetuflow_server.broker.liveness import FRAME_ID_RETENTION
from hetuflow_server.config import RetentionSection
from hetuflow_server.infra import bmc, db
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.loops import LoopFactory
from hetuflow_server.metrics import ServerMetrics
from hetuflow_server.scheduler.leader import Leadership

__all__ = ["FRAME_ID_RETENTION", "STALE_SERVER_HEARTBEATS", "Retention", "RetentionReport"]

logger = logging.getLogger(__name__)

STALE_SERVER_HEARTBEATS: Final = 3
"""A server that missed this many heartbeats in a row is marked inactive."""

LOG_TABLE: Final = "sched_task_log"
AUDIT_TABLE: Final = "sched_audit"
NOTIFICATION_TABLE: Final = "sched_notification"
FRAME_ID_TABLE: Final = "sched_agent_msg"

Clock = Callable[[], datetime]
_Delete = Callable[[db.Connection], Awaitable[int]]
_T = TypeVar("_T")


class RetentionReport(msgspec.Struct, kw_only=True):
    """What one pass did."""

    servers: int = 0
    """Servers marked inactive."""
    logs: int = 0
    """Log chunks deleted."""
    frame_ids: int = 0
    """Agent frame ids forgotten."""
    audit: int = 0
    """Audit entries deleted."""
    notifications: int = 0
    """Finished notifications deleted."""
    lost_lease: bool = False
    """The pass stopped because this server no longer held the lease."""


class _LostLease(Exception):
    """The lease moved on: stop the pass."""


class Retention:
    """Deletes aged rows while ``leadership`` says this server leads (see the module docstring)."""

    def __init__(
        self,
        db: ModelManager,
        leadership: Leadership,
        settings: RetentionSection,
        *,
        heartbeat_interval_secs: float,
        metrics: ServerMetrics | None = None,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._leadership = leadership
        self._settings = settings
        self._stale_after = timedelta(seconds=heartbeat_interval_secs * STALE_SERVER_HEARTBEATS)
        self._metrics = metrics
        self._clock = clock

    def loop(self) -> LoopFactory:
        """The background loop: a pass every ``interval_secs`` while this server leads."""

        async def run() -> None:
            while True:
                await asyncio.sleep(self._settings.interval_secs)
                if not self._leadership.is_leader:
                    continue
                try:
                    report = await self.run_once()
                except Exception:
                    logger.exception("retention pass failed")
                    continue
                if report.servers or report.logs or report.frame_ids or report.audit or report.notifications:
                    logger.info("retention: %s", msgspec.structs.asdict(report))

        return run

    async def run_once(self) -> RetentionReport:
        """One pass (see the module docstring); does nothing unless this server leads."""
        report = RetentionReport()
        if self._leadership.tenure is None:
            return report
        now = self._clock()
        limit = self._settings.batch_size
        try:
            report.servers = len(
                await self._fenced(
                    lambda conn: bmc.ServerBmc.mark_stale_inactive(conn, before=now - self._stale_after)
                )
            )
            self._observe_servers(report.servers)
            if self._settings.log_days:
                log_cutoff = now - timedelta(days=self._settings.log_days)
                report.logs = await self._drain(
                    LOG_TABLE, lambda conn: bmc.LogBmc.delete_before(conn, log_cutoff, limit=limit)
                )
            if self._settings.audit_days:
                audit_cutoff = now - timedelta(days=self._settings.audit_days)
                report.audit = await self._drain(
                    AUDIT_TABLE, lambda conn: bmc.AuditBmc.delete_before(conn, audit_cutoff, limit=limit)
                )
            if self._settings.notification_days:
                sent_cutoff = now - timedelta(days=self._settings.notification_days)
                report.notifications = await self._drain(
                    NOTIFICATION_TABLE,
                    lambda conn: bmc.NotificationBmc.delete_before(conn, sent_cutoff, limit=limit),
                )
            frame_cutoff = now - FRAME_ID_RETENTION
            report.frame_ids = await self._drain(
                FRAME_ID_TABLE,
                lambda conn: bmc.AgentMsgBmc.purge(conn, before=frame_cutoff, limit=limit),
            )
        except _LostLease:
            logger.warning("lost the leader lease during a retention pass")
            report.lost_lease = True
        return report

    async def _drain(self, table: str, delete: _Delete) -> int:
        """Run ``delete`` batch after batch until a batch comes back short; the rows deleted."""
        total = 0
        while True:
            deleted = await self._fenced(delete)
            total += deleted
            if self._metrics is not None:
                self._metrics.retention_deleted(table, deleted)
            if deleted < self._settings.batch_size:
                return total

    async def _fenced(self, statement: Callable[[db.Connection], Awaitable[_T]]) -> _T:
        async with self._db.transaction() as conn:
            if not await self._leadership.fence(conn):
                raise _LostLease
            return await statement(conn)

    def _observe_servers(self, count: int) -> None:
        if count:
            logger.warning(
                "marked %d server(s) inactive: no heartbeat for %gs",
                count,
                self._stale_after.total_seconds(),
            )
        if self._metrics is not None:
            self._metrics.servers_marked_inactive(count)
