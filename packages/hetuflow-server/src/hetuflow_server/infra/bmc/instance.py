"""InstanceBmc: statements on ``sched_task_instance`` — attempts, their reported states and late reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import InstanceStatus, TaskStatus
from hetuflow_core.job import RetryPolicy
from hetuflow_core.task import InstanceMetrics, TaskInstance
from hetuflow_server.infra import db, transitions
from hetuflow_server.infra.bmc._rows import many, many_json, required
from hetuflow_server.infra.sql import query

__all__ = ["AppliedReport", "DispatchedLater", "InstanceBmc", "LiveAttempt", "NewInstance", "ReportRow"]

_DISPATCH = query("dispatch_attempts")
_GET = query("get_instance")
_LIST_OF_TASK = query("list_task_instances")
_LIST_BY_IDS = query("list_instances")
_APPLY_REPORTS = query("apply_instance_reports")
_RECORD_LATE = query("record_late_reports")
_RECORD_FRAMES = query("record_report_frames")
_FORGET_FRAMES = query("forget_report_frames")
_LIVE_OF_AGENTS = query("live_instances_of_agents")
_COUNT_LIVE = query("count_live_instances")
_LIVE_OF_SILENT = query("live_instances_of_silent_agents")
_LIVE_ATTEMPTS = query("live_attempts_of_agent")

_INSTANCE_EDGES = transitions.edges_json(transitions.INSTANCE_TRANSITIONS)
_DISPATCHABLE = transitions.allowed_sources(TaskStatus.DISPATCHED)
_json = msgspec.json.Encoder()


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


class ReportRow(msgspec.Struct, kw_only=True, frozen=True):
    """A reported state of one attempt, as the report statements take it: who reports it (None: the server's
    own verdict) and what the report says."""

    instance_id: UUID
    agent_id: str | None
    status: InstanceStatus
    at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    output: str = ""
    output_truncated: bool = False
    metrics: InstanceMetrics | None = None
    via_running: bool = False
    """A ``running`` report and the final one right after it, applied as one change (dispatched → running →
    ``status``) when the attempt is still dispatched: one row version instead of two."""
    running_at: datetime | None = None
    """When it started, for ``via_running``."""


class AppliedReport(msgspec.Struct, kw_only=True, frozen=True):
    """An attempt a report moved, with its task as locked right after (``task_status`` None: no task)."""

    id: UUID
    task_id: UUID
    status: InstanceStatus
    task_status: TaskStatus | None
    task_instance_id: UUID | None
    """The task's current attempt: only a report of that one moves the task."""
    task_attempt: int | None
    retry: RetryPolicy | None
    """The task's retry policy, for failed, timed-out and lost attempts only."""


class InstanceBmc:
    """Task instances: attempts of a task on an agent."""

    @staticmethod
    async def dispatch_many(
        conn: db.Connection, instances: Sequence[NewInstance]
    ) -> tuple[list[TaskInstance], bool]:
        """Create attempts and mark their tasks dispatched to them, in one statement; the attempts, and
        whether every task moved. A second instance for the same (task, attempt) is a Conflict."""
        if not instances:
            return [], True
        return _dispatched(await db.fetch_one(conn, _DISPATCH, _dispatch_params(instances)))

    @staticmethod
    async def dispatch_many_later(conn: db.Connection, instances: Sequence[NewInstance]) -> DispatchedLater:
        """``dispatch_many``, sent with the transaction's next statement or its COMMIT (one round trip
        fewer); its result is read from the handle once that ran."""
        if not instances:
            return DispatchedLater(None)
        return DispatchedLater(await db.fetch_later(conn, _DISPATCH, _dispatch_params(instances)))

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
    async def transition_many(conn: db.Connection, reports: Sequence[ReportRow]) -> list[AppliedReport]:
        """Apply reported states the attempt state machine allows, in one statement (each instance once), each
        only to its reporter's instances; the attempts that moved, their tasks locked for what follows."""
        if not reports:
            return []
        if len({r.instance_id for r in reports}) != len(reports):
            raise ValueError("transition_many: an instance may appear only once per batch")
        params = {"reports": _json.encode(reports).decode(), "edges": _INSTANCE_EDGES}
        return many_json(await db.fetch_one(conn, _APPLY_REPORTS, params), AppliedReport)

    @staticmethod
    async def record_late(conn: db.Connection, reports: Sequence[ReportRow]) -> list[UUID]:
        """Store reports for instances already final in another state, without changing any state."""
        if not reports:
            return []
        rows = await db.fetch_all(conn, _RECORD_LATE, {"reports": _json.encode(reports).decode()})
        return [row["id"] for row in rows]

    @staticmethod
    async def record_frames(conn: db.Connection, frames: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Remember report frames ``(agent_id, msg_id)`` of any agents as applied; those seen for the first
        time."""
        if not frames:
            return set()
        document = _json.encode([{"agent_id": agent, "msg_id": msg} for agent, msg in frames]).decode()
        rows = await db.fetch_all(conn, _RECORD_FRAMES, {"frames": document})
        return {(row["agent_id"], row["msg_id"]) for row in rows}

    @staticmethod
    async def forget_frames(conn: db.Connection, frames: Sequence[tuple[str, str]]) -> None:
        """Forget report frames ``(agent_id, msg_id)`` recorded in this transaction (they were refused)."""
        if frames:
            document = _json.encode([{"agent_id": agent, "msg_id": msg} for agent, msg in frames]).decode()
            await db.execute(conn, _FORGET_FRAMES, {"frames": document})

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


class DispatchedLater:
    """The outcome of ``InstanceBmc.dispatch_many_later``, readable once its statement ran."""

    __slots__ = ("_later",)

    def __init__(self, later: db.Later | None) -> None:
        self._later = later

    def result(self) -> tuple[list[TaskInstance], bool]:
        """The attempts, and whether every task moved (as ``dispatch_many``)."""
        if self._later is None:
            return [], True
        return _dispatched(self._later.first())


def _dispatch_params(instances: Sequence[NewInstance]) -> db.Params:
    return {"attempts": _json.encode(instances).decode(), "allowed": _DISPATCHABLE}


def _dispatched(row: db.Row | None) -> tuple[list[TaskInstance], bool]:
    """The attempts the dispatch statement created, and whether every task moved."""
    return many_json(row, TaskInstance), row is not None and bool(row["all_marked"])
