"""FlowBmc and FlowRunBmc: statements on ``sched_flow`` and ``sched_flow_run``, and a run's current tasks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import ConcurrencyPolicy, FlowRunStatus, JobStatus
from hetuflow_core.flow import Flow, FlowRun, FlowRunStep, FlowStep
from hetuflow_core.task import Task
from hetuflow_core.types import Parameters
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import jsonb, many, one, required
from hetuflow_server.infra.sql import query

__all__ = ["FlowBmc", "FlowRunBmc", "LockedRun", "NewFlow"]

_INSERT = query("insert_flow")
_GET = query("get_flow")
_LOCK = query("lock_flow")
_LIST = query("list_flows")
_UPDATE = query("update_flow")
_SOFT_DELETE = query("soft_delete_flow")
_INSERT_RUN = query("insert_flow_run")
_GET_RUN = query("get_flow_run")
_LOCK_RUN = query("lock_flow_run")
_LIST_RUNS = query("list_flow_runs")
_LIST_RUNS_NEWEST_FIRST = query("list_flow_runs_newest_first")
_LIVE_RUNS = query("live_flow_runs")
_RUN_STEPS = query("flow_run_steps")
_LOCK_RUN_TASKS = query("lock_flow_run_tasks")
_END_RUN = query("end_flow_run")
_REOPEN_RUN = query("reopen_flow_run")
_REFRESH_RUNS = query("refresh_flow_runs")


class NewFlow(msgspec.Struct, kw_only=True, frozen=True):
    """Every user-settable field of a flow, validated: what an insert or an update writes."""

    name: str
    description: str
    status: JobStatus
    concurrency: ConcurrencyPolicy
    steps: list[FlowStep]


class LockedRun(msgspec.Struct, kw_only=True, frozen=True):
    """A run locked for a cancel or a retry, with the steps it started with."""

    run: FlowRun
    step_specs: list[FlowStep]


class _StepRow(FlowRunStep, kw_only=True):
    flow_run_id: UUID
    depends_on: list[UUID]


def _params(flow: NewFlow) -> dict[str, object]:
    return {
        "name": flow.name,
        "description": flow.description,
        "status": flow.status.value,
        "concurrency": flow.concurrency.value,
        "steps": jsonb(flow.steps),
    }


class FlowBmc:
    """Flows: DAGs of job steps. Deleted flows are invisible here."""

    @staticmethod
    async def insert(conn: db.Connection, flow_id: UUID, data: NewFlow) -> Flow:
        """Store a flow (already validated); a name taken by a live flow is a Conflict."""
        row = await db.fetch_one(conn, _INSERT, {"id": flow_id, **_params(data)})
        return required(row, Flow, "flow", flow_id)

    @staticmethod
    async def get(conn: db.Connection, flow_id: UUID, *, lock: bool = False) -> Flow:
        """The live flow (locked FOR NO KEY UPDATE when ``lock``), or NotFound."""
        row = await db.fetch_one(conn, _LOCK if lock else _GET, {"id": flow_id})
        return required(row, Flow, "flow", flow_id)

    @staticmethod
    async def select_page(conn: db.Connection, *, after_id: UUID | None, limit: int) -> list[Flow]:
        """Up to ``limit`` live flows after ``after_id`` in id order."""
        return many(await db.fetch_all(conn, _LIST, {"after_id": after_id, "limit": limit}), Flow)

    @staticmethod
    async def update(conn: db.Connection, flow_id: UUID, data: NewFlow) -> Flow:
        """Overwrite the live flow's fields; NotFound, or Conflict for a taken name."""
        row = await db.fetch_one(conn, _UPDATE, {"id": flow_id, **_params(data)})
        return required(row, Flow, "flow", flow_id)

    @staticmethod
    async def soft_delete(conn: db.Connection, flow_id: UUID) -> None:
        """Mark the live flow deleted (disabled, name freed); NotFound when there is none."""
        required(await db.fetch_one(conn, _SOFT_DELETE, {"id": flow_id}), dict, "flow", flow_id)


class FlowRunBmc:
    """Runs of flows."""

    @staticmethod
    async def insert(
        conn: db.Connection,
        run_id: UUID,
        *,
        flow_id: UUID,
        parameters: Parameters,
        steps: Sequence[FlowStep],
        by: str | None,
        schedule_id: UUID | None = None,
        scheduled_at: datetime | None = None,
    ) -> FlowRun:
        """Store a new pending run with the steps it starts with (and the schedule slot that fired it)."""
        params = {
            "id": run_id,
            "flow_id": flow_id,
            "parameters": jsonb(parameters),
            "steps": jsonb(list(steps)),
            "schedule_id": schedule_id,
            "scheduled_at": scheduled_at,
            "by": by,
        }
        return required(await db.fetch_one(conn, _INSERT_RUN, params), FlowRun, "flow run", run_id)

    @staticmethod
    async def get(conn: db.Connection, run_id: UUID) -> FlowRun:
        """The run (without its steps), or NotFound."""
        return required(await db.fetch_one(conn, _GET_RUN, {"id": run_id}), FlowRun, "flow run", run_id)

    @staticmethod
    async def lock(conn: db.Connection, run_id: UUID) -> LockedRun:
        """The run and its step specs, locked FOR NO KEY UPDATE; NotFound."""
        row = required(await db.fetch_one(conn, _LOCK_RUN, {"id": run_id}), dict, "flow run", run_id)
        specs = msgspec.convert(row.pop("step_specs"), list[FlowStep])
        return LockedRun(run=one(row, FlowRun), step_specs=specs)

    @staticmethod
    async def select_page(
        conn: db.Connection, flow_id: UUID, *, after_id: UUID | None, limit: int
    ) -> list[FlowRun]:
        """Up to ``limit`` runs of a flow after ``after_id`` in id order (without their steps)."""
        params = {"flow_id": flow_id, "after_id": after_id, "limit": limit}
        return many(await db.fetch_all(conn, _LIST_RUNS, params), FlowRun)

    @staticmethod
    async def select_page_newest_first(
        conn: db.Connection, flow_id: UUID, *, before_id: UUID | None, limit: int
    ) -> list[FlowRun]:
        """Up to ``limit`` runs of a flow before ``before_id``, latest first (without their steps)."""
        params = {"flow_id": flow_id, "before_id": before_id, "limit": limit}
        return many(await db.fetch_all(conn, _LIST_RUNS_NEWEST_FIRST, params), FlowRun)

    @staticmethod
    async def live(
        conn: db.Connection, *, flow_id: UUID | None = None, schedule_id: UUID | None = None
    ) -> list[FlowRun]:
        """The pending or running runs of ``flow_id`` or of ``schedule_id``, oldest slot first."""
        params = {"flow_id": flow_id, "schedule_id": schedule_id}
        return many(await db.fetch_all(conn, _LIVE_RUNS, params), FlowRun)

    @staticmethod
    async def steps(conn: db.Connection, run_ids: Sequence[UUID]) -> dict[UUID, list[FlowRunStep]]:
        """The current task of every step of each run, in dependency order."""
        if not run_ids:
            return {}
        rows = many(await db.fetch_all(conn, _RUN_STEPS, {"run_ids": list(run_ids)}), _StepRow)
        by_run: dict[UUID, list[_StepRow]] = {run_id: [] for run_id in run_ids}
        for row in rows:
            by_run[row.flow_run_id].append(row)
        return {
            run_id: [
                FlowRunStep(
                    name=row.name,
                    task_id=row.task_id,
                    status=row.status,
                    agent_id=row.agent_id,
                    error=row.error,
                )
                for row in _dependency_order(run_rows)
            ]
            for run_id, run_rows in by_run.items()
        }

    @staticmethod
    async def lock_tasks(conn: db.Connection, run_id: UUID) -> list[Task]:
        """The run's current tasks, locked FOR UPDATE in id order."""
        return many(await db.fetch_all(conn, _LOCK_RUN_TASKS, {"run_id": run_id}), Task)

    @staticmethod
    async def end(conn: db.Connection, run_id: UUID, status: FlowRunStatus) -> FlowRun | None:
        """pending|running → ``status`` now; None when the run had already ended."""
        row = await db.fetch_one(conn, _END_RUN, {"id": run_id, "status": status.value})
        return None if row is None else one(row, FlowRun)

    @staticmethod
    async def reopen(conn: db.Connection, run_id: UUID) -> FlowRun | None:
        """failed|cancelled → running; None when the run is in another state."""
        row = await db.fetch_one(conn, _REOPEN_RUN, {"id": run_id})
        return None if row is None else one(row, FlowRun)

    @staticmethod
    async def refresh(conn: db.Connection, run_ids: Sequence[UUID]) -> list[FlowRun]:
        """Re-derive the state of unfinished runs from their tasks; returns the runs that changed."""
        if not run_ids:
            return []
        return many(await db.fetch_all(conn, _REFRESH_RUNS, {"run_ids": list(run_ids)}), FlowRun)


def _dependency_order(rows: Sequence[_StepRow]) -> list[_StepRow]:
    """``rows`` with every task after the tasks it depends on, level by level, each level in id order."""
    known = {row.task_id for row in rows}
    pending = sorted(rows, key=lambda row: row.task_id)
    placed: set[UUID] = set()
    ordered: list[_StepRow] = []
    while pending:
        ready = [row for row in pending if all(d in placed or d not in known for d in row.depends_on)]
        ready = ready or pending  # only a cycle could leave nothing ready; never lose a row over it
        placed.update(row.task_id for row in ready)
        ordered.extend(ready)
        pending = [row for row in pending if row.task_id not in placed]
    return ordered
