"""TaskBmc: statements on ``sched_task`` — inserts, pages, conditional status changes, the dispatcher's claim,
and the views of tasks as schedule slots and daemon runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from hetuflow_core.enums import TaskStatus
from hetuflow_core.task import Task
from hetuflow_server.errors import NotFound
from hetuflow_server.infra import db, transitions
from hetuflow_server.infra.bmc._rows import jsonb, many, many_json, one, required
from hetuflow_server.infra.bmc._task_records import (
    AgentProfile,
    DaemonRun,
    LateSlot,
    LiveRun,
    ManualRun,
    NewTask,
    TaskChange,
    TaskOutcome,
)
from hetuflow_server.infra.sql import query

__all__ = ["TaskBmc"]

_INSERT_MANY = query("insert_tasks")
_TRIGGER = query("trigger_tasks")
_GET = query("get_task")
_LOCK_MANY = query("lock_tasks")
_LIST = query("list_tasks")
_LIST_ASCENDING = query("list_tasks_ascending")
_TRANSITION = query("transition_task")
_TRANSITION_MANY = query("transition_tasks")
_CLAIM = query("claim_due_tasks")
_PROMOTE = query("promote_due_retries")
_DELETE_FUTURE_OF_JOB = query("delete_future_tasks_of_job")
_DELETE_UNSTARTED_OF_SCHEDULE = query("delete_unstarted_tasks_of_schedule")
_CANCEL_OPEN_OF_JOB = query("cancel_open_tasks_of_job")
_SKIP_BLOCKED = query("skip_blocked_flow_tasks")
_NEXT_WAKE = query("next_wake_times")
_SLOT_TASKS_AT = query("slot_tasks_at")
_COUNT_SLOT_TASKS_AFTER = query("count_slot_tasks_after")
_LATER_LATE = query("count_later_late_slots")
_LIVE_RUNS = query("live_runs_of_schedules")
_DAEMON_RUNS = query("list_daemon_runs")
_LOCK_LIVE_DAEMONS = query("lock_live_daemon_tasks")

_TASK_EDGES = transitions.edges_json(transitions.TASK_TRANSITIONS)
_OPEN_UNSTARTED = [TaskStatus.PENDING.value, TaskStatus.WAITING_RETRY.value]
_json = msgspec.json.Encoder()


class TaskBmc:
    """Tasks: planned executions of a job."""

    @staticmethod
    async def insert_many(conn: db.Connection, tasks: Sequence[NewTask], *, by: str | None) -> list[Task]:
        """Insert ``tasks`` in one statement; a slot (and pin) its schedule already has, or a second live task
        of a daemon schedule (and pin), is skipped (not returned)."""
        if not tasks:
            return []
        params: dict[str, Any] = {
            "ids": [t.id for t in tasks],
            "job_ids": [t.job_id for t in tasks],
            "schedule_ids": [t.schedule_id for t in tasks],
            "flow_run_ids": [t.flow_run_id for t in tasks],
            "flow_steps": [t.flow_step for t in tasks],
            "retry_ofs": [t.retry_of for t in tasks],
            "origins": [t.origin.value for t in tasks],
            "scheduled_ats": [t.scheduled_at for t in tasks],
            "priorities": [t.priority for t in tasks],
            "parameters": [jsonb(t.parameters) for t in tasks],
            "configs": [jsonb(t.config) for t in tasks],
            "depends_on": [jsonb(t.depends_on) for t in tasks],
            "trigger_rules": [t.trigger_rule.value for t in tasks],
            "by": by,
        }
        return many(await db.fetch_all(conn, _INSERT_MANY, params), Task)

    @staticmethod
    async def insert_triggered(
        conn: db.Connection,
        job_id: UUID,
        runs: Sequence[ManualRun],
        *,
        by: str | None,
        channel: str,
        payload: str = "",
    ) -> bool:
        """One manual task per run of the live job ``job_id``, with its current config, and one NOTIFY on
        ``channel``, in one statement (see the query for the lock it takes). False, and nothing inserted,
        for a broadcast job: its tasks are one per agent. NotFound when there is no such live job."""
        # The runs travel as one JSON document: one parameter however many there are, encoded in C.
        runs_json = _json.encode(runs).decode()
        params = {"job_id": job_id, "runs": runs_json, "by": by, "channel": channel, "payload": payload}
        row = await db.fetch_one(conn, _TRIGGER, params)
        if row is None:
            raise NotFound("job", job_id)
        if row["broadcast"]:
            return False
        if row["made"] != len(runs):
            raise AssertionError(f"trigger made {row['made']} of {len(runs)} tasks")
        return True

    @staticmethod
    async def get(conn: db.Connection, task_id: UUID) -> Task:
        """The task, or NotFound."""
        return required(await db.fetch_one(conn, _GET, {"id": task_id}), Task, "task", task_id)

    @staticmethod
    async def lock_many(conn: db.Connection, task_ids: Sequence[UUID]) -> list[Task]:
        """The existing tasks among ``task_ids``, locked FOR UPDATE in id order."""
        if not task_ids:
            return []
        return many(await db.fetch_all(conn, _LOCK_MANY, {"ids": list(task_ids)}), Task)

    @staticmethod
    async def select_page(
        conn: db.Connection,
        *,
        statuses: Sequence[TaskStatus] = (),
        job_id: UUID | None = None,
        schedule_id: UUID | None = None,
        flow_run_id: UUID | None = None,
        agent_id: str | None = None,
        scheduled_after: datetime | None = None,
        scheduled_before: datetime | None = None,
        ascending: bool = False,
        cursor: tuple[datetime, UUID] | None = None,
        limit: int,
    ) -> list[Task]:
        """Up to ``limit`` tasks, newest scheduled first (earliest first when ``ascending``), strictly after
        ``cursor`` (scheduled_at, id) in that order."""
        params = {
            "statuses": [status.value for status in statuses],
            "job_id": job_id,
            "schedule_id": schedule_id,
            "flow_run_id": flow_run_id,
            "agent_id": agent_id,
            "scheduled_after": scheduled_after,
            "scheduled_before": scheduled_before,
            "cursor_at": cursor[0] if cursor else None,
            "cursor_id": cursor[1] if cursor else None,
            "limit": limit,
        }
        return many(await db.fetch_all(conn, _LIST_ASCENDING if ascending else _LIST, params), Task)

    @staticmethod
    async def transition(
        conn: db.Connection,
        task_id: UUID,
        status: TaskStatus,
        *,
        instance_id: UUID | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> tuple[Task, TaskStatus] | None:
        """Move the task to ``status`` if the task state machine allows it from its current state (and
        ``instance_id`` is its current attempt, when given). Returns the changed task and the state it left,
        or None when nothing changed (wrong state, other instance, or no such task)."""
        row = await db.fetch_one(
            conn,
            _TRANSITION,
            {
                "id": task_id,
                "status": status.value,
                "allowed": transitions.allowed_sources(status),
                "instance_id": instance_id,
                "error": error,
                "next_attempt_at": next_attempt_at,
            },
        )
        if row is None:
            return None
        return one(row, Task), TaskStatus(row["previous_status"])

    @staticmethod
    async def transition_many(conn: db.Connection, changes: Sequence[TaskChange]) -> list[TaskOutcome]:
        """Apply many status changes in one statement (each task at most once); the tasks that changed."""
        if not changes:
            return []
        if len({change.task_id for change in changes}) != len(changes):
            raise ValueError("transition_many: a task may appear only once per batch")
        params = {"changes": _json.encode(changes).decode(), "edges": _TASK_EDGES}
        return many_json(await db.fetch_one(conn, _TRANSITION_MANY, params), TaskOutcome)

    @staticmethod
    async def claim_due(
        conn: db.Connection, *, horizon: datetime, profiles: Sequence[AgentProfile], limit: int
    ) -> list[Task]:
        """Lock up to ``limit`` pending tasks due by ``horizon`` that one of ``profiles`` can run (SKIP
        LOCKED).

        The locks hold until the transaction ends: dispatch the ones you can in the same transaction.

        """
        if not profiles or limit <= 0:
            return []
        params = {"horizon": horizon, "profiles": jsonb(list(profiles)), "limit": limit}
        return many_json(await db.fetch_one(conn, _CLAIM, params), Task)

    @staticmethod
    async def promote_due_retries(conn: db.Connection, *, limit: int) -> None:
        """waiting_retry → pending for up to ``limit`` tasks whose backoff has passed, with the transaction's
        next statement (a claim, which then sees them pending)."""
        params = {"limit": limit, "allowed": transitions.allowed_sources(TaskStatus.PENDING)}
        await db.execute_later(conn, _PROMOTE, params)

    @staticmethod
    async def delete_future_of_job(conn: db.Connection, job_id: UUID) -> list[UUID]:
        """Delete the job's scheduled tasks that never started and are not due yet."""
        return [row["id"] for row in await db.fetch_all(conn, _DELETE_FUTURE_OF_JOB, {"job_id": job_id})]

    @staticmethod
    async def delete_unstarted_of_schedule(
        conn: db.Connection, schedule_id: UUID, *, include_due: bool
    ) -> list[UUID]:
        """Delete the schedule's tasks that never started: only future ones, or also those already due."""
        params = {"schedule_id": schedule_id, "include_due": include_due}
        return [row["id"] for row in await db.fetch_all(conn, _DELETE_UNSTARTED_OF_SCHEDULE, params)]

    @staticmethod
    async def cancel_open_of_job(conn: db.Connection, job_id: UUID, *, reason: str) -> list[Task]:
        """Cancel the job's tasks that are not on an agent (pending, waiting_retry); the tasks cancelled."""
        allowed = [s for s in _OPEN_UNSTARTED if s in transitions.allowed_sources(TaskStatus.CANCELLED)]
        params = {"job_id": job_id, "reason": reason, "allowed": allowed}
        return many(await db.fetch_all(conn, _CANCEL_OPEN_OF_JOB, params), Task)

    @staticmethod
    async def skip_blocked_flow_tasks(conn: db.Connection, run_ids: Sequence[UUID]) -> list[UUID]:
        """pending → skipped for flow steps of ``run_ids`` whose dependencies did not succeed (one level)."""
        if not run_ids:
            return []
        allowed = [
            s for s in transitions.allowed_sources(TaskStatus.SKIPPED) if s == TaskStatus.PENDING.value
        ]
        params = {"run_ids": list(run_ids), "allowed": allowed}
        return [row["id"] for row in await db.fetch_all(conn, _SKIP_BLOCKED, params)]

    @staticmethod
    async def next_wake_times(
        conn: db.Connection, *, now: datetime, after: datetime
    ) -> tuple[datetime | None, datetime | None, datetime | None]:
        """The earliest pending task due after ``after``, the earliest end of a retry backoff, and the
        earliest pending slot of a forbid/replace job due after ``now`` (None where there is none)."""
        return _wake_times(await db.fetch_one(conn, _NEXT_WAKE, {"now": now, "after": after}))

    @staticmethod
    async def next_wake_times_later(
        conn: db.Connection, *, now: datetime, after: datetime
    ) -> Callable[[], tuple[datetime | None, datetime | None, datetime | None]]:
        """``next_wake_times``, sent with the transaction's next statement (one round trip fewer); call the
        result once that ran."""
        later = await db.fetch_later(conn, _NEXT_WAKE, {"now": now, "after": after})
        return lambda: _wake_times(later.first())

    # -- tasks as the slots of their schedules (generator, admission) ---------------------------------------

    @staticmethod
    async def slot_tasks_at(
        conn: db.Connection, schedule_id: UUID, scheduled_ats: Sequence[datetime]
    ) -> dict[datetime, UUID]:
        """The ids of the tasks the schedule already has at ``scheduled_ats``, by slot."""
        if not scheduled_ats:
            return {}
        params = {"schedule_id": schedule_id, "scheduled_ats": list(scheduled_ats)}
        return {row["scheduled_at"]: row["id"] for row in await db.fetch_all(conn, _SLOT_TASKS_AT, params)}

    @staticmethod
    async def count_slot_tasks_after(conn: db.Connection, schedule_id: UUID, after: datetime) -> int:
        """How many slots after ``after`` the schedule has tasks for."""
        row = await db.fetch_one(conn, _COUNT_SLOT_TASKS_AFTER, {"schedule_id": schedule_id, "after": after})
        return 0 if row is None else int(row["n"])

    @staticmethod
    async def later_late_counts(conn: db.Connection, slots: Sequence[LateSlot]) -> dict[UUID, int]:
        """For each late slot task: how many later slots of its schedule with the same pin, late as well
        (see `LateSlot`), still wait for their first attempt."""
        if not slots:
            return {}
        params = {
            "ids": [s.task_id for s in slots],
            "schedule_ids": [s.schedule_id for s in slots],
            "scheduled_ats": [s.scheduled_at for s in slots],
            "cutoffs": [s.cutoff for s in slots],
            "unwatched_befores": [s.unwatched_before for s in slots],
            "tolerances": [s.tolerance_secs for s in slots],
            "pins": [s.pin or "" for s in slots],
        }
        return {row["id"]: int(row["later"]) for row in await db.fetch_all(conn, _LATER_LATE, params)}

    @staticmethod
    async def live_runs(conn: db.Connection, schedule_ids: Sequence[UUID]) -> list[LiveRun]:
        """Dispatched or running tasks of ``schedule_ids``, by schedule and slot."""
        if not schedule_ids:
            return []
        rows = await db.fetch_all(conn, _LIVE_RUNS, {"schedule_ids": sorted(set(schedule_ids))})
        return many(rows, LiveRun)

    # -- tasks of daemon schedules (daemon supervisor, stopping daemons) ------------------------------------

    @staticmethod
    async def daemon_runs(
        conn: db.Connection, schedule_id: UUID, *, pin: str | None, limit: int
    ) -> list[DaemonRun]:
        """The latest ``limit`` runs of the daemon schedule pinned to ``pin`` (None: none), newest first."""
        params = {"schedule_id": schedule_id, "pin": pin or "", "limit": limit}
        return many(await db.fetch_all(conn, _DAEMON_RUNS, params), DaemonRun)

    @staticmethod
    async def lock_live_daemons(
        conn: db.Connection, *, schedule_id: UUID | None = None, job_id: UUID | None = None
    ) -> list[Task]:
        """The live daemon tasks of ``schedule_id`` or of ``job_id``, locked FOR UPDATE in id order."""
        if schedule_id is None and job_id is None:
            return []
        params = {"schedule_id": schedule_id, "job_id": job_id}
        return many(await db.fetch_all(conn, _LOCK_LIVE_DAEMONS, params), Task)


def _wake_times(row: db.Row | None) -> tuple[datetime | None, datetime | None, datetime | None]:
    if row is None:
        return None, None, None
    return row["next_pending_at"], row["next_retry_at"], row["next_guarded_at"]
