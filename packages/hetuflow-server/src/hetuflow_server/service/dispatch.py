"""DispatchService: what the broker writes — claims, status reports, state sync, hand-backs and logs.

Each method is one transaction over the concept modules that do the work: ``_claim`` (who gets which due
task), ``reports`` (applying status reports), ``_reconcile`` (registration state sync, silent agents) and
``_handback`` (dispatches that never reached their agent). Every batch that frees capacity or adds work sends
one NOTIFY; the observer (the server's metrics) hears about what committed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar
from uuid import UUID

import msgspec

from hetuflow_core.enums import TaskStatus
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.task import TaskInstance
from hetuflow_server.infra import bmc
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service import _claim, _reconcile
from hetuflow_server.service._claim import AgentCapacity, Dispatch
from hetuflow_server.service._handback import hand_back
from hetuflow_server.service._reconcile import Reconciliation
from hetuflow_server.service.reports import AgentReport, ReportApplier, ReportResult
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

__all__ = ["DEFAULT_LOG_QUOTA", "DispatchObserver", "DispatchRound", "DispatchService"]

DEFAULT_LOOKAHEAD_SECS: Final = 5.0
DEFAULT_BATCH_SIZE: Final = 200
DEFAULT_LOG_QUOTA: Final = bmc.LogQuota(max_bytes=64 * 1024 * 1024, grace_secs=300.0)
"""What an attempt may store of its log unless configured (``retention`` section)."""

_Results = TypeVar("_Results", list[ReportResult], list[ReportResult | None])


class DispatchRound(msgspec.Struct, kw_only=True, frozen=True):
    """What one dispatcher round claimed, and when to look again without being woken."""

    dispatches: list[Dispatch]
    wake_at: datetime | None
    """Asked only when the round claimed fewer than its limit: the next moment work comes due (None: none is
    planned, or not asked)."""


class DispatchObserver(Protocol):
    """What hears about committed dispatch work (the server's metrics); called after each commit."""

    def dispatched(self, delays_secs: Sequence[float]) -> None:
        """Attempts were created; how late each was after its task became due (0 when ahead of time)."""

    def reports_applied(self, results: Sequence[ReportResult | None], *, by_agent: bool) -> None:
        """Status reports were applied: an agent's (None for a resent frame) or the server's verdicts."""


class DispatchService:
    """Claim and dispatch, status reports, liveness and logs: what the agents' WebSocket and the dispatcher
    write."""

    def __init__(
        self,
        db: ModelManager,
        *,
        server_id: UUID | None = None,
        rand: Callable[[], float] = random.random,
        observer: DispatchObserver | None = None,
        misfire_slack_secs: float = MISFIRE_SLACK_SECS,
        log_quota: bmc.LogQuota = DEFAULT_LOG_QUOTA,
    ) -> None:
        self._db = db
        self._server_id = server_id
        self._log_quota = log_quota
        self._misfire_slack_secs = misfire_slack_secs
        self._reports = ReportApplier(rand)
        self._observer = observer

    async def dispatch(
        self,
        agents: Sequence[AgentCapacity],
        *,
        lookahead_secs: float = DEFAULT_LOOKAHEAD_SECS,
        limit: int = DEFAULT_BATCH_SIZE,
    ) -> list[Dispatch]:
        """Claim due work for ``agents`` and assign it; the dispatches to push (each agent within its free
        slots). Tasks due within ``lookahead_secs`` are included (the agent waits for ``fire_at``)."""
        round_ = await self.dispatch_round(agents, lookahead_secs=lookahead_secs, limit=limit, wake=False)
        return round_.dispatches

    async def dispatch_round(
        self,
        agents: Sequence[AgentCapacity],
        *,
        lookahead_secs: float = DEFAULT_LOOKAHEAD_SECS,
        limit: int = DEFAULT_BATCH_SIZE,
        wake: bool = True,
    ) -> DispatchRound:
        """``dispatch``, and with ``wake`` when a round that claimed fewer than ``limit`` must look again
        (``next_wake_at``), read in the same transaction: a dispatcher round is one transaction of three
        round trips (BEGIN; wake-up times, retries promoted and the claim; the attempts and COMMIT)."""
        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            # Retries promoted and wake-up times read ahead of the claim, in its round trip (the answer is the
            # same, see `next_wake_at_later`); the attempts are written with the COMMIT.
            await _claim.promote_due_retries(conn)
            wake_at_of = await _claim.next_wake_at_later(conn, now=now, lookahead_secs=lookahead_secs)
            pending = await _claim.claim(
                conn,
                agents,
                now=now,
                lookahead_secs=lookahead_secs,
                limit=limit,
                server_id=self._server_id,
                misfire_slack_secs=self._misfire_slack_secs,
            )
        claimed = pending.claimed()
        wake_at = wake_at_of() if wake and len(claimed) < limit else None
        if self._observer is not None and claimed:  # due: a retry's backoff end, else the planned time
            due = [(c.instance.dispatched_at, c.task.next_attempt_at or c.task.scheduled_at) for c in claimed]
            self._observer.dispatched([max((at - due_at).total_seconds(), 0.0) for at, due_at in due])
        dispatches = [
            Dispatch(
                task=msgspec.structs.replace(
                    c.task,
                    status=TaskStatus.DISPATCHED,
                    attempt=c.new.attempt,
                    instance_id=c.new.id,
                    agent_id=c.new.agent_id,
                    next_attempt_at=None,
                ),
                instance=c.instance,
                fire_at=c.new.fire_at,
            )
            for c in claimed
        ]
        return DispatchRound(dispatches=dispatches, wake_at=wake_at)

    async def apply_reports(
        self, reports: Sequence[TaskInstanceUpdatedData], *, agent_id: str | None
    ) -> list[ReportResult]:
        """Apply status reports of ``agent_id``'s instances (None: the server's own verdicts, e.g. lost).

        Reports of one instance are applied in ``seq`` order, many instances per statement. A succeeded report
        with a non-zero exit code counts as failed. Returns one result per report, in input order.
        """
        async with self._db.transaction() as conn:
            results = await self._reports.apply(conn, reports, agent_id=agent_id)
        return self._observed(results, by_agent=agent_id is not None)

    async def apply_agent_reports(self, reports: Sequence[AgentReport]) -> list[ReportResult | None]:
        """Apply reports of several agents in one transaction, each only to its own sender's instances.

        A frame id already applied for its agent (a resend after a reconnect) is skipped and answered None, so
        a replayed ``running`` never lands beside a final state. One result per report, in input order.
        """
        async with self._db.transaction() as conn:
            results = await self._reports.apply_from_agents(conn, reports)
        return self._observed(results, by_agent=True)

    async def mark_lost(self, instance_ids: Collection[UUID], *, reason: str) -> list[ReportResult]:
        """Declare live attempts lost (their agent is gone); their tasks retry or fail per policy."""
        async with self._db.transaction() as conn:
            results = await self._reports.mark_lost(conn, instance_ids, reason=reason)
        return self._observed(results, by_agent=False)

    async def reap_offline_agents(self, *, timeout_secs: float, now: datetime | None = None) -> list[str]:
        """Agents silent for ``timeout_secs`` before ``now`` (default: the moment of the call, before waiting
        for a connection) go offline and their live attempts are lost; the agent ids."""
        before = (now or datetime.now(UTC)) - timedelta(seconds=timeout_secs)
        async with self._db.transaction() as conn:
            agent_ids, results = await _reconcile.reap_silent_agents(
                conn, self._reports, before=before, reason=f"agent silent for more than {timeout_secs:g}s"
            )
        self._observed(results, by_agent=False)
        return agent_ids

    async def reconcile(self, agent_id: str, running: Collection[UUID]) -> Reconciliation:
        """State sync at registration: of what the agent says it runs, keep its live current attempts and kill
        the rest; its live attempts it did not mention are lost. One it never reported started (still
        ``dispatched``: the dispatch died with a connection or a server before the agent took it) is handed
        back, due again whatever the retry budget; a started one follows the retry policy."""
        async with self._db.transaction() as conn:
            reconciliation, results = await _reconcile.reconcile(conn, self._reports, agent_id, running)
        self._observed(results, by_agent=False)
        return reconciliation

    async def hand_back(self, instance_ids: Collection[UUID], *, reason: str) -> list[UUID]:
        """Attempts that never reached their agent (or that it refused) end ``lost``; their tasks go back to
        ``waiting_retry``, due at once whatever the retry budget: the attempt never ran. Only attempts still
        ``dispatched`` are handed back; returns the ids of the tasks re-queued."""
        async with self._db.transaction() as conn:
            return await hand_back(conn, instance_ids, reason)

    async def next_wake_at(self, *, lookahead_secs: float = DEFAULT_LOOKAHEAD_SECS) -> datetime | None:
        """When a dispatcher must look again without being woken: the moment the next pending task enters the
        look-ahead window, or the next retry backoff ends; None when there is neither."""
        async with self._db.transaction() as conn:
            return await _claim.next_wake_at(conn, now=datetime.now(UTC), lookahead_secs=lookahead_secs)

    async def live_attempts(self, agent_id: str) -> list[bmc.LiveAttempt]:
        """The agent's dispatched or running attempts with the status of their tasks (state sync)."""
        async with self._db.transaction() as conn:
            return await bmc.InstanceBmc.live_attempts_of_agent(conn, agent_id)

    async def store_logs(self, chunks: Sequence[bmc.NewLogChunk]) -> int:
        """Store log chunks within each attempt's quota (resends, chunks of attempts long ended and what is
        beyond the quota are skipped); the number newly stored."""
        async with self._db.transaction() as conn:
            return len(await bmc.LogBmc.insert_many(conn, chunks, self._log_quota))

    async def live_instances(self, agent_id: str) -> list[TaskInstance]:
        """The agent's dispatched or running attempts."""
        async with self._db.transaction() as conn:
            return await bmc.InstanceBmc.live_of_agents(conn, [agent_id])

    def _observed(self, results: _Results, *, by_agent: bool) -> _Results:
        if self._observer is not None:
            self._observer.reports_applied(results, by_agent=by_agent)
        return results
