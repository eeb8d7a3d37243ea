"""InstanceBmc: statements on ``sched_task_instance`` — attempts, their reported states and late reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from hetuflow_core.enums import TaskStatus
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.task import TaskInstance
from hetuflow_server.infra import db, transitions
from hetuflow_server.infra.bmc._rows import jsonb_or_none, many, required
from hetuflow_server.infra.sql import query

__all__ = ["InstanceBmc", "LiveAttempt", "NewInstance"]

_INSERT_MANY = query("insert_instances")
_GET = query("get_instance")
_LIST_OF_TASK = query("list_task_instances")
_LIST_BY_IDS = query("list_instances")
_TRANSITION_MANY = query("transition_instances")
_RECORD_LATE = query("record_late_reports")
_LIVE_OF_AGENTS = query("live_instances_of_agents")
_COUNT_LIVE = query("count_live_instances")
_LIVE_OF_SILENT = query("live_instances_of_silent_agents")
_LIVE_ATTEMPTS = query("live_attempts_of_agent")

_INSTANCE_EDGES = transitions.transition_pairs(transitions.INSTANCE_TRANSITIONS)


class NewInstance(msgspec.Struct, kw_only=True, frozen=True):
    """An attempt to create (status ``dispatched``)."""

    id: UUID
    task_id: UUID
    job_id: UUID
    agent_id: str
    attempt: int
    fire_at: datetime
    server_id: UUID | None = None


class LiveAttempt(msgspec.Struct, kw_only=True, frozen=True):
    """An attempt still dispatched or running on an agent, with the status of its task."""

    instance_id: UUID
    task_id: UUID
    task_status: TaskStatus


def _report_params(reports: Sequence[TaskInstanceUpdatedData], agent_id: str | None) -> dict[str, Any]:
    return {
        "ids": [r.instance_id for r in reports],
        "statuses": [r.status.value for r in reports],
        "exit_codes": [r.exit_code for r in reports],
        "signals": [r.signal for r in reports],
        "errors": [r.error for r in reports],
        "outputs": [r.output for r in reports],
        "truncated": [r.output_truncated for r in reports],
        "metrics": [jsonb_or_none(r.metrics) for r in reports],
        "agent_id": agent_id,
    }


class InstanceBmc:
    """Task instances: attempts of a task on an agent."""

    @staticmethod
    async def insert_many(conn: db.Connection, instances: Sequence[NewInstance]) -> list[TaskInstance]:
        """Create attempts in one statement; a second instance for the same (task, attempt) is a Conflict."""
        if not instances:
            return []
        params = {
            "ids": [i.id for i in instances],
            "task_ids": [i.task_id for i in instances],
            "job_ids": [i.job_id for i in instances],
            "agent_ids": [i.agent_id for i in instances],
            "server_ids": [i.server_id for i in instances],
            "attempts": [i.attempt for i in instances],
            "fire_ats": [i.fire_at for i in instances],
        }
        return many(await db.fetch_all(conn, _INSERT_MANY, params), TaskInstance)

    @staticmethod
    async def get(conn: db.Connection, instance_id: UUID) -> TaskInstance:
        """The instance, or NotFound."""
        row = await db.fetch_one(conn, _GET, {"id": instance_id})
        return required(row, TaskInstance, "instance", instance_id)

    @staticmethod
    async def of_task(conn: db.Connection, task_id: UUID) -> list[TaskInstance]:
        """Every attempt of a task, first to last."""
        return many(await db.fetch_all(conn, _LIST_OF_TASK, {"task_id": task_id}), TaskInstance)

    @staticmethod
    async def by_ids(conn: db.Connection, instance_ids: Sequence[UUID]) -> list[TaskInstance]:
        """The existing instances among ``instance_ids``."""
        if not instance_ids:
            return []
        return many(await db.fetch_all(conn, _LIST_BY_IDS, {"ids": list(instance_ids)}), TaskInstance)

    @staticmethod
    async def transition_many(
        conn: db.Connection, reports: Sequence[TaskInstanceUpdatedData], *, agent_id: str | None
    ) -> list[TaskInstance]:
        """Apply reported states the attempt state machine allows, in one statement (each instance once).

        With ``agent_id``, only that agent's instances move. Returns the instances that changed.
        """
        if not reports:
            return []
        if len({r.instance_id for r in reports}) != len(reports):
            raise ValueError("transition_many: an instance may appear only once per batch")
        params = _report_params(reports, agent_id)
        params.update(ats=[r.at for r in reports], edge_from=_INSTANCE_EDGES[0], edge_to=_INSTANCE_EDGES[1])
        return many(await db.fetch_all(conn, _TRANSITION_MANY, params), TaskInstance)

    @staticmethod
    async def record_late(
        conn: db.Connection, reports: Sequence[TaskInstanceUpdatedData], *, agent_id: str | None
    ) -> list[UUID]:
        """Store reports for instances already final in another state, without changing any state."""
        if not reports:
            return []
        rows = await db.fetch_all(conn, _RECORD_LATE, _report_params(reports, agent_id))
        return [row["id"] for row in rows]

    @staticmethod
    async def live_of_agents(conn: db.Connection, agent_ids: Sequence[str]) -> list[TaskInstance]:
        """Attempts still dispatched or running on ``agent_ids``."""
        if not agent_ids:
            return []
        return many(await db.fetch_all(conn, _LIVE_OF_AGENTS, {"agent_ids": list(agent_ids)}), TaskInstance)

    @staticmethod
    async def count_live(conn: db.Connection, agent_ids: Sequence[str]) -> dict[str, int]:
        """Number of dispatched or running attempts per agent (agents with none are absent)."""
        if not agent_ids:
            return {}
        rows = await db.fetch_all(conn, _COUNT_LIVE, {"agent_ids": list(agent_ids)})
        return {row["agent_id"]: row["live"] for row in rows}

    @staticmethod
    async def live_of_silent_agents(conn: db.Connection, *, before: datetime) -> list[TaskInstance]:
        """Attempts still dispatched or running whose agent has not beaten since ``before`` (or is gone)."""
        return many(await db.fetch_all(conn, _LIVE_OF_SILENT, {"before": before}), TaskInstance)

    @staticmethod
    async def live_attempts_of_agent(conn: db.Connection, agent_id: str) -> list[LiveAttempt]:
        """The agent's dispatched or running attempts with their task's status."""
        rows = await db.fetch_all(conn, _LIVE_ATTEMPTS, {"agent_id": agent_id})
        return [
            LiveAttempt(
                instance_id=row["id"], task_id=row["task_id"], task_status=TaskStatus(row["task_status"])
            )
            for row in rows
        ]
