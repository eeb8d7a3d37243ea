"""Reconciling what agents hold with the database: the state sync of a registration, and silent agents.

At registration an agent lists the attempts it runs: of those, its live current attempts are kept and the rest
killed; its live attempts it did not mention are lost (handed back when it never reported them started); kept
attempts whose task ended while the agent was away are to be cancelled on it. On the leader, agents silent
for the agent timeout go offline and their live attempts are lost; their tasks follow the retry policy.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import InstanceStatus
from hetuflow_server.infra import bmc, db
from hetuflow_server.service._handback import hand_back
from hetuflow_server.service.reports import ReportApplier, ReportResult

__all__ = ["Reconciliation", "reap_silent_agents", "reconcile"]


class Reconciliation(msgspec.Struct, kw_only=True):
    """State sync of a (re)registering agent: attempts to keep running, to kill, and declared lost; ``ended``
    are the kept ones whose task ended meanwhile (cancelled while the agent could not be told)."""

    keep: list[UUID]
    kill: list[UUID]
    lost: list[UUID]
    ended: list[UUID] = msgspec.field(default_factory=list)


async def reconcile(
    conn: db.Connection, reports: ReportApplier, agent_id: str, running: Collection[UUID]
) -> tuple[Reconciliation, list[ReportResult]]:
    """The state sync of ``agent_id`` claiming to run ``running``, in ``conn``'s transaction; with the results
    of the attempts it declared lost."""
    live = await bmc.InstanceBmc.live_of_agents(conn, [agent_id])
    live_ids = {inst.id for inst in live}
    tasks = await bmc.TaskBmc.lock_many(conn, [i.task_id for i in live])
    current = {task.instance_id: task.status for task in tasks}
    keep = sorted(i for i in running if i in live_ids and i in current)
    kill = sorted(i for i in running if i not in keep)
    lost = sorted(live_ids - set(keep))
    ended = [i for i in keep if current[i].is_final]
    unstarted = {i.id for i in live if i.id in lost and i.status is InstanceStatus.DISPATCHED}
    await hand_back(conn, unstarted, "the agent reconnected without it: it never got it")
    results = await reports.mark_lost(
        conn,
        [i for i in lost if i not in unstarted],
        reason="not running on the agent after it reconnected",
    )
    return Reconciliation(keep=keep, kill=kill, lost=lost, ended=ended), results


async def reap_silent_agents(
    conn: db.Connection, reports: ReportApplier, *, before: datetime, reason: str
) -> tuple[list[str], list[ReportResult]]:
    """Agents last heard before ``before`` go offline and their live attempts are lost (with ``reason``); the
    agents marked offline and the results of the attempts lost. An attempt the agent never reported started
    is handed back instead: its task is due again without spending a retry."""
    agent_ids = await bmc.AgentBmc.mark_stale_offline(conn, before=before)
    # Also agents a closed connection already marked offline: silence is what loses their attempts.
    live = await bmc.InstanceBmc.live_of_silent_agents(conn, before=before)
    unstarted = {inst.id for inst in live if inst.status is InstanceStatus.DISPATCHED}
    await hand_back(conn, unstarted, f"{reason}; it never started the attempt")
    results = await reports.mark_lost(
        conn, [inst.id for inst in live if inst.id not in unstarted], reason=reason
    )
    return agent_ids, results
