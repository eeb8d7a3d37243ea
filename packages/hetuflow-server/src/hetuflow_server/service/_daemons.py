"""Stopping daemons in a service's transaction: a disabled or deleted schedule or job ends its live runs."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from hetuflow_core.enums import TaskStatus
from hetuflow_server.infra import bmc, db, notify

__all__ = ["stop_daemons"]

_ON_AGENT: Final = frozenset({TaskStatus.DISPATCHED, TaskStatus.RUNNING})


async def stop_daemons(
    conn: db.Connection, *, reason: str, schedule_id: UUID | None = None, job_id: UUID | None = None
) -> list[bmc.TaskOutcome]:
    """Cancel the live daemon tasks of ``schedule_id`` or ``job_id`` as the API cancels a task: the task ends
    ``cancelled`` now and the agent holding its attempt is told (over NOTIFY) to kill the process."""
    live = await bmc.TaskBmc.lock_live_daemons(conn, schedule_id=schedule_id, job_id=job_id)
    changes = [bmc.TaskChange(task_id=task.id, status=TaskStatus.CANCELLED, error=reason) for task in live]
    cancelled = await bmc.TaskBmc.transition_many(conn, changes)
    on_agent = {task.id for task in live if task.status in _ON_AGENT}
    for task in cancelled:
        if task.id not in on_agent or task.instance_id is None or task.agent_id is None:
            continue
        await notify.cancel_on_agent(
            conn, agent_id=task.agent_id, instance_id=task.instance_id, reason=reason
        )
    return cancelled
