"""DispatchService: the data side of the dispatcher, the gateway and liveness (DESIGN §3, §5).

``dispatch`` claims due tasks for a set of connected agents with ``FOR UPDATE SKIP LOCKED`` (so no two servers
ever take the same task), gives each to the least-loaded matching agent with a free slot, creates the
instances (the fencing tokens of the attempts) and marks the tasks dispatched — one transaction, a handful of
statements per batch; it first promotes retries whose backoff has passed back to ``pending``. Status reports,
lost attempts and state sync go through ``service.reports`` (one transaction a batch). Each batch that frees
capacity or adds work sends one NOTIFY.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar
from uuid import UUID

import msgspec

from hetuflow_core.enums import CommandKind, InstanceStatus, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.task import Task, TaskInstance
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.scheduler import admission
from hetuflow_server.service.reports import AgentReport, ReportApplier, ReportOutcome, ReportResult

__all__ = [
    "AgentCapacity",
    "AgentReport",
    "Dispatch",
    "DispatchObserver",
    "DispatchService",
    "Reconciliation",
    "ReportOutcome",
    "ReportResult",
]

DEFAULT_LOOKAHEAD_SECS: Final = 5.0
DEFAULT_BATCH_SIZE: Final = 200
PROMOTE_BATCH_SIZE: Final = 1000

_Results = TypeVar("_Results", list[ReportResult], list[ReportResult | None])


class AgentCapacity(msgspec.Struct, kw_only=True, frozen=True):
    """A connected agent as the dispatcher sees it: what it can run and how many more it can take."""

    agent_id: str
    labels: dict[str, str]
    commands: list[CommandKind]
    free_slots: int
    load: int = 0
    """Attempts it holds now; the least loaded matching agent gets the next task."""


class Dispatch(msgspec.Struct, kw_only=True):
    """A task given to an agent: push ``ScheduledTask`` for ``instance``, to fire at ``fire_at``."""

    task: Task
    instance: TaskInstance
    fire_at: datetime
    """The task's due time, or the dispatch time for overdue work (retries, backlog)."""


class Reconciliation(msgspec.Struct, kw_only=True):
    """State sync of a (re)registering agent: attempts to keep running, to kill, and declared lost."""

    keep: list[UUID]
    kill: list[UUID]
    lost: list[UUID]


class DispatchObserver(Protocol):
    """What hears about committed dispatch work (the server's metrics); called after each commit."""

    def dispatched(self, delays_secs: Sequence[float]) -> None:
        """Attempts were created; how late each was after its task became due (0 when ahead of time)."""

    def reports_applied(self, results: Sequence[ReportResult | None], *, by_agent: bool) -> None:
        """Status reports were applied: an agent's (None for a resent frame) or the server's verdicts."""


def _labels_match(required: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in required.items())


class DispatchService:
    """Claim and dispatch, status reports, liveness and logs: what the gateway and dispatcher write."""

    def __init__(
        self,
        db: ModelManager,
        *,
        server_id: UUID | None = None,
        rand: Callable[[], float] = random.random,
        observer: DispatchObserver | None = None,
    ) -> None:
        self._db = db
        self._server_id = server_id
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
        slots).

        Tasks due within ``lookahead_secs`` are included (the agent waits for ``fire_at``); priority first,
        then due time. Tasks none of the agents can run (labels, command, pinned agent) stay pending for other
        servers.
        """
        usable = [agent for agent in agents if agent.free_slots > 0 and agent.commands]
        budget = min(limit, sum(agent.free_slots for agent in usable))
        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            await bmc.TaskBmc.promote_due_retries(conn, limit=PROMOTE_BATCH_SIZE)
            if budget <= 0:
                return []
            profiles: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], list[str]] = defaultdict(list)
            for a in usable:
                key = (tuple(sorted(a.labels.items())), tuple(sorted(c.value for c in a.commands)))
                profiles[key].append(a.agent_id)
            claimed = await bmc.TaskBmc.claim_due(
                conn,
                horizon=now + timedelta(seconds=lookahead_secs),
                profiles=[
                    bmc.AgentProfile(labels=dict(lbl), commands=list(cmd), agent_ids=sorted(ids))
                    for (lbl, cmd), ids in sorted(profiles.items())
                ],
                limit=budget,
            )
            free = {agent.agent_id: agent.free_slots for agent in usable}
            load = {agent.agent_id: agent.load for agent in usable}
            chosen: list[tuple[Task, bmc.NewInstance]] = []
            for task in claimed:
                candidates = [
                    agent
                    for agent in usable
                    if free[agent.agent_id] > 0
                    and task.config.command in agent.commands
                    and _labels_match(task.config.target.labels, agent.labels)
                    and task.config.target.agent_id in (None, agent.agent_id)
                ]
                if not candidates:
                    continue  # released at commit, still pending
                best = min(candidates, key=lambda a: (load[a.agent_id], -free[a.agent_id], a.agent_id))
                free[best.agent_id] -= 1
                load[best.agent_id] += 1
                chosen.append(
                    (
                        task,
                        bmc.NewInstance(
                            id=uuid7(),
                            task_id=task.id,
                            job_id=task.job_id,
                            agent_id=best.agent_id,
                            attempt=task.attempt + 1,
                            fire_at=max(task.scheduled_at, now),
                            server_id=self._server_id,
                        ),
                    )
                )
            # Schedule slots start only as their misfire and overlap policies allow (scheduler.admission).
            admitted = {
                task.id for task in await admission.admit(conn, [task for task, _ in chosen], now=now)
            }
            chosen = [(task, inst) for task, inst in chosen if task.id in admitted]
            if not chosen:
                return []
            instances = await bmc.InstanceBmc.insert_many(conn, [inst for _, inst in chosen])
            marked = set(
                await bmc.TaskBmc.mark_dispatched(
                    conn,
                    [
                        bmc.Assignment(
                            task_id=task.id, instance_id=inst.id, agent_id=inst.agent_id, attempt=inst.attempt
                        )
                        for task, inst in chosen
                    ],
                )
            )
            # The claimed rows are locked by this transaction, so every one of them is still pending.
            assert marked == {task.id for task, _ in chosen}, "claimed tasks changed under their row lock"
        by_id = {inst.id: inst for inst in instances}
        if self._observer is not None:  # due: a retry's backoff end, else the planned time
            due = [
                (by_id[new.id].dispatched_at, task.next_attempt_at or task.scheduled_at)
                for task, new in chosen
            ]
            self._observer.dispatched([max((at - due_at).total_seconds(), 0.0) for at, due_at in due])
        return [
            Dispatch(
                task=msgspec.structs.replace(
                    task,
                    status=TaskStatus.DISPATCHED,
                    attempt=new.attempt,
                    instance_id=new.id,
                    agent_id=new.agent_id,
                    next_attempt_at=None,
                ),
                instance=by_id[new.id],
                fire_at=new.fire_at,
            )
            for task, new in chosen
        ]

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

    async def mark_lost(self, instance_ids: Collection[UUID], *, reason: str) -> list[ReportResult]:
        """Declare live attempts lost (their agent is gone); their tasks retry or fail per policy."""
        async with self._db.transaction() as conn:
            results = await self._reports.mark_lost(conn, instance_ids, reason=reason)
        return self._observed(results, by_agent=False)

    async def reap_offline_agents(self, *, timeout_secs: float) -> list[str]:
        """Agents silent for ``timeout_secs`` go offline and their live attempts are lost; the agent ids."""
        async with self._db.transaction() as conn:
            before = datetime.now(UTC) - timedelta(seconds=timeout_secs)
            agent_ids = await bmc.AgentBmc.mark_stale_offline(conn, before=before)
            # Also agents a closed connection already marked offline: silence is what loses their attempts.
            live = await bmc.InstanceBmc.live_of_silent_agents(conn, before=before)
            results = await self._reports.mark_lost(
                conn, [inst.id for inst in live], reason=f"agent silent for more than {timeout_secs:g}s"
            )
        self._observed(results, by_agent=False)
        return agent_ids

    async def reconcile(self, agent_id: str, running: Collection[UUID]) -> Reconciliation:
        """State sync at registration: of what the agent says it runs, keep its live current attempts and kill
        the rest; its live attempts it did not mention are lost. One it never reported started (still
        ``dispatched``: the dispatch died with a connection or a server before the agent took it) is handed
        back, due again whatever the retry budget; a started one follows the retry policy."""
        async with self._db.transaction() as conn:
            live = await bmc.InstanceBmc.live_of_agents(conn, [agent_id])
            live_ids = {inst.id for inst in live}
            current = {
                task.instance_id for task in await bmc.TaskBmc.lock_many(conn, [i.task_id for i in live])
            }
            keep = sorted(i for i in running if i in live_ids and i in current)
            kill = sorted(i for i in running if i not in keep)
            lost = sorted(live_ids - set(keep))
            unstarted = {i.id for i in live if i.id in lost and i.status is InstanceStatus.DISPATCHED}
            await self._hand_back(conn, unstarted, "the agent reconnected without it: it never got it")
            results = await self._reports.mark_lost(
                conn,
                [i for i in lost if i not in unstarted],
                reason="not running on the agent after it reconnected",
            )
        self._observed(results, by_agent=False)
        return Reconciliation(keep=keep, kill=kill, lost=lost)

    async def apply_agent_reports(self, reports: Sequence[AgentReport]) -> list[ReportResult | None]:
        """Apply reports of several agents in one transaction, each only to its own sender's instances.

        A frame id already applied for its agent (a resend after a reconnect) is skipped and answered None, so
        a replayed ``running`` never lands beside a final state. One result per report, in input order.
        """
        results: list[ReportResult | None] = [None] * len(reports)
        by_agent: dict[str, dict[str, int]] = defaultdict(dict)
        for position, report in enumerate(reports):
            by_agent[report.agent_id].setdefault(report.msg_id, position)  # first of any repeats in the batch
        async with self._db.transaction() as conn:
            for agent_id, positions in by_agent.items():
                fresh = await bmc.AgentMsgBmc.record(conn, agent_id, list(positions))
                todo = [position for msg_id, position in positions.items() if msg_id in fresh]
                applied = await self._reports.apply(conn, [reports[p].data for p in todo], agent_id=agent_id)
                for position, result in zip(todo, applied, strict=True):
                    results[position] = result
        return self._observed(results, by_agent=True)

    def _observed(self, results: _Results, *, by_agent: bool) -> _Results:
        if self._observer is not None:
            self._observer.reports_applied(results, by_agent=by_agent)
        return results

    async def hand_back(self, instance_ids: Collection[UUID], *, reason: str) -> list[UUID]:
        """Attempts that never reached their agent (or that it refused) end ``lost``; their tasks go back to
        ``waiting_retry``, due at once whatever the retry budget: the attempt never ran. Only attempts still
        ``dispatched`` are handed back; returns the ids of the tasks re-queued."""
        async with self._db.transaction() as conn:
            return await self._hand_back(conn, instance_ids, reason)

    async def _hand_back(
        self, conn: db.Connection, instance_ids: Collection[UUID], reason: str
    ) -> list[UUID]:
        """``hand_back`` inside the caller's transaction."""
        reports = [
            TaskInstanceUpdatedData(
                instance_id=inst.id, task_id=inst.task_id, status=InstanceStatus.LOST, error=reason
            )
            for inst in await bmc.InstanceBmc.by_ids(conn, sorted(instance_ids))
            if inst.status is InstanceStatus.DISPATCHED
        ]
        lost = await bmc.InstanceBmc.transition_many(conn, reports, agent_id=None)
        now = datetime.now(UTC)
        changes = [
            bmc.TaskChange(
                task_id=task.id,
                instance_id=task.instance_id,
                status=TaskStatus.WAITING_RETRY,
                error=reason,
                next_attempt_at=now,
            )
            for task in await bmc.TaskBmc.lock_many(conn, [inst.task_id for inst in lost])
            if task.instance_id in {inst.id for inst in lost} and not task.status.is_final
        ]
        requeued = [task.id for task in await bmc.TaskBmc.transition_many(conn, changes)]
        if lost:
            await notify.notify(conn, notify.WORK_CHANNEL, "")
        return requeued

    async def next_wake_at(self, *, lookahead_secs: float = DEFAULT_LOOKAHEAD_SECS) -> datetime | None:
        """When a dispatcher must look again without being woken: the moment the next pending task enters the
        look-ahead window, or the next retry backoff ends; None when there is neither."""
        window = timedelta(seconds=lookahead_secs)
        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            pending_at, retry_at = await bmc.TaskBmc.next_due(conn, after=now + window)
            # Slots of forbid/replace jobs are claimed when due, not a look-ahead early (scheduler.admission).
            guarded_at = await bmc.SlotTaskBmc.next_guarded_at(conn, after=now)
        moments = [pending_at - window if pending_at is not None else None, retry_at, guarded_at]
        return min((moment for moment in moments if moment is not None), default=None)

    async def live_attempts(self, agent_id: str) -> list[bmc.LiveAttempt]:
        """The agent's dispatched or running attempts with the status of their tasks (state sync)."""
        async with self._db.transaction() as conn:
            return await bmc.InstanceBmc.live_attempts_of_agent(conn, agent_id)

    async def store_logs(self, chunks: Sequence[bmc.NewLogChunk]) -> int:
        """Store log chunks (resends are skipped); the number newly stored."""
        async with self._db.transaction() as conn:
            return len(await bmc.LogBmc.insert_many(conn, chunks))

    async def live_instances(self, agent_id: str) -> list[TaskInstance]:
        """The agent's dispatched or running attempts."""
        async with self._db.transaction() as conn:
            return await bmc.InstanceBmc.live_of_agents(conn, [agent_id])
