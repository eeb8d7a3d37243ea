"""Handing back attempts that never reached their agent: the attempt ends ``lost``, its task is due again.

A dispatch whose connection closed before it was written, that the agent refused or could not read, or that a
reconnecting agent does not hold never ran, so its task goes back to ``waiting_retry`` due at once, whatever
its retry budget. Only attempts still ``dispatched`` are handed back: one the agent reported started follows
the retry policy instead.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from uuid import UUID

from hetuflow_core.enums import InstanceStatus, TaskStatus
from hetuflow_server.infra import bmc, db, notify

__all__ = ["hand_back"]


async def hand_back(conn: db.Connection, instance_ids: Collection[UUID], reason: str) -> list[UUID]:
    """Hand back ``instance_ids`` in ``conn``'s transaction; the ids of the tasks re-queued."""
    reports = [
        bmc.ReportRow(instance_id=inst.id, agent_id=None, status=InstanceStatus.LOST, error=reason)
        for inst in await bmc.InstanceBmc.by_ids(conn, sorted(instance_ids))
        if inst.status is InstanceStatus.DISPATCHED
    ]
    lost = await bmc.InstanceBmc.transition_many(conn, reports)
    now = datetime.now(UTC)
    changes = [
        bmc.TaskChange(
            task_id=attempt.task_id,
            instance_id=attempt.id,
            status=TaskStatus.WAITING_RETRY,
            error=reason,
            next_attempt_at=now,
        )
        for attempt in lost
        if attempt.task_instance_id == attempt.id
        and attempt.task_status is not None
        and not attempt.task_status.is_final
    ]
    requeued = [task.id for task in await bmc.TaskBmc.transition_many(conn, changes)]
    if lost:
        await notify.work_added(conn)
    return requeued
