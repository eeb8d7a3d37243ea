"""Claiming due work for connected agents: which task goes to which agent, and the attempts that carry it.

``claim`` runs inside the dispatch transaction, after ``promote_due_retries`` put the retries whose backoff
has passed back in line: it locks due pending tasks with ``FOR UPDATE SKIP LOCKED`` (so no two servers ever
take the same task), gives each to the least-loaded matching agent with a free slot, lets the admission step
judge schedule slots (misfire and overlap), then creates the attempts (the fencing tokens of a dispatch) and
marks their tasks dispatched, with the transaction's COMMIT (``PendingClaims``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import msgspec

from hetuflow_core.enums import CommandKind
from hetuflow_core.ids import uuid7
from hetuflow_core.task import Task, TaskInstance
from hetuflow_server.infra import bmc, db
from hetuflow_server.service._admission import admit
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

__all__ = [
    "AgentCapacity",
    "Claimed",
    "Dispatch",
    "PendingClaims",
    "claim",
    "next_wake_at",
    "next_wake_at_later",
    "promote_due_retries",
]

PROMOTE_BATCH_SIZE: Final = 1000
"""Retries moved back to pending per dispatch round, at most."""


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
    """The task's due time (for a retry the end of its backoff), or the dispatch time for overdue work."""


class Claimed(msgspec.Struct, kw_only=True, frozen=True):
    """A claimed task (as it was before the claim) and the attempt created for it."""

    task: Task
    new: bmc.NewInstance
    instance: TaskInstance


async def claim(
    conn: db.Connection,
    agents: Sequence[AgentCapacity],
    *,
    now: datetime,
    lookahead_secs: float,
    limit: int,
    server_id: UUID | None,
    misfire_slack_secs: float = MISFIRE_SLACK_SECS,
) -> PendingClaims:
    """Claim due work for ``agents`` (each within its free slots) in ``conn``'s transaction.

    Tasks due within ``lookahead_secs`` are included (the agent waits for ``fire_at``); priority first, then
    due time. Tasks none of the agents can run (labels, command, pinned agent) stay pending for other servers.
    ``misfire_slack_secs`` goes to the admission step (``scheduler.misfire_slack_secs``).
    """
    usable = [agent for agent in agents if agent.free_slots > 0 and agent.commands]
    budget = min(limit, sum(agent.free_slots for agent in usable))
    if budget <= 0:
        return PendingClaims([], None)
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
                    fire_at=_fire_at(task, now),
                    server_id=server_id,
                ),
            )
        )
    # Schedule slots start only as their misfire and overlap policies allow.
    admitted = {
        task.id
        for task in await admit(conn, [task for task, _ in chosen], now=now, slack_secs=misfire_slack_secs)
    }
    chosen = [(task, inst) for task, inst in chosen if task.id in admitted]
    if not chosen:
        return PendingClaims([], None)
    dispatched = await bmc.InstanceBmc.dispatch_many_later(conn, [inst for _, inst in chosen])
    return PendingClaims(chosen, dispatched)


class PendingClaims:
    """What a claim chose; its attempts are written with the transaction's COMMIT (one round trip for both),
    so read ``claimed()`` once the transaction committed."""

    __slots__ = ("_chosen", "_dispatched")

    def __init__(
        self, chosen: list[tuple[Task, bmc.NewInstance]], dispatched: bmc.DispatchedLater | None
    ) -> None:
        self._chosen = chosen
        self._dispatched = dispatched

    def __len__(self) -> int:
        return len(self._chosen)

    def claimed(self) -> list[Claimed]:
        """The claimed tasks with their attempts."""
        if self._dispatched is None:
            return []
        instances, all_marked = self._dispatched.result()
        # The claimed rows were locked by the transaction, so every one of them was still pending.
        assert all_marked, "claimed tasks changed under their row lock"
        by_id = {inst.id: inst for inst in instances}
        return [Claimed(task=task, new=new, instance=by_id[new.id]) for task, new in self._chosen]


async def next_wake_at(conn: db.Connection, *, now: datetime, lookahead_secs: float) -> datetime | None:
    """When a dispatcher must look again without being woken: the moment the next pending task enters the
    look-ahead window, or the next retry backoff ends; None when there is neither."""
    window = timedelta(seconds=lookahead_secs)
    return _wake_at(await bmc.TaskBmc.next_wake_times(conn, now=now, after=now + window), window)


async def promote_due_retries(conn: db.Connection) -> None:
    """Put the tasks whose retry backoff has passed back in line, with the transaction's next statement (a
    claim then sees them pending)."""
    await bmc.TaskBmc.promote_due_retries(conn, limit=PROMOTE_BATCH_SIZE)


async def next_wake_at_later(
    conn: db.Connection, *, now: datetime, lookahead_secs: float
) -> Callable[[], datetime | None]:
    """``next_wake_at``, read with the transaction's next statement; call the result once that ran.

    Read before a claim in the same transaction it gives the same answer as after it: the claim takes only
    tasks due within the window, holds back guarded slots (still pending), and never touches retries."""
    window = timedelta(seconds=lookahead_secs)
    times = await bmc.TaskBmc.next_wake_times_later(conn, now=now, after=now + window)
    return lambda: _wake_at(times(), window)


def _wake_at(
    times: tuple[datetime | None, datetime | None, datetime | None], window: timedelta
) -> datetime | None:
    pending_at, retry_at, guarded_at = times
    # Slots of forbid/replace jobs are claimed when due, not a look-ahead early (see the admission step).
    moments = [pending_at - window if pending_at is not None else None, retry_at, guarded_at]
    return min((moment for moment in moments if moment is not None), default=None)


def _fire_at(task: Task, now: datetime) -> datetime:
    """When the attempt starts: when due, never before the end of a retry's backoff (the round's ``now`` is
    read before the transaction that promoted the retry, so it can be a little earlier), else now."""
    due = task.scheduled_at if task.next_attempt_at is None else max(task.scheduled_at, task.next_attempt_at)
    return max(due, now)


def _labels_match(required: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in required.items())
