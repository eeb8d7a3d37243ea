"""FlowBmc and FlowRunBmc: statements on ``sched_flow`` and ``sched_flow_run``."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from hetuflow_core.flow import Flow, FlowCreate, FlowRun
from hetuflow_core.types import Parameters
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import jsonb, many, required
from hetuflow_server.infra.sql import query

__all__ = ["FlowBmc", "FlowRunBmc"]

_INSERT = query("insert_flow")
_GET = query("get_flow")
_LIST = query("list_flows")
_INSERT_RUN = query("insert_flow_run")
_GET_RUN = query("get_flow_run")
_LIST_RUNS = query("list_flow_runs")
_REFRESH_RUNS = query("refresh_flow_runs")


class FlowBmc:
    """Flows: DAGs of job steps."""

    @staticmethod
    async def insert(conn: db.Connection, flow_id: UUID, data: FlowCreate) -> Flow:
        """Store a flow (already validated); a duplicate name is a Conflict."""
        params = {
            "id": flow_id,
            "name": data.name,
            "description": data.description,
            "steps": jsonb(data.steps),
        }
        return required(await db.fetch_one(conn, _INSERT, params), Flow, "flow", flow_id)

    @staticmethod
    async def get(conn: db.Connection, flow_id: UUID) -> Flow:
        """The flow, or NotFound."""
        return required(await db.fetch_one(conn, _GET, {"id": flow_id}), Flow, "flow", flow_id)

    @staticmethod
    async def select_page(conn: db.Connection, *, after_id: UUID | None, limit: int) -> list[Flow]:
        """Up to ``limit`` flows after ``after_id`` in id order."""
        return many(await db.fetch_all(conn, _LIST, {"after_id": after_id, "limit": limit}), Flow)


class FlowRunBmc:
    """Runs of flows."""

    @staticmethod
    async def insert(
        conn: db.Connection, run_id: UUID, *, flow_id: UUID, parameters: Parameters, by: str | None
    ) -> FlowRun:
        """Store a new pending run."""
        params = {"id": run_id, "flow_id": flow_id, "parameters": jsonb(parameters), "by": by}
        return required(await db.fetch_one(conn, _INSERT_RUN, params), FlowRun, "flow run", run_id)

    @staticmethod
    async def get(conn: db.Connection, run_id: UUID) -> FlowRun:
        """The run, or NotFound."""
        return required(await db.fetch_one(conn, _GET_RUN, {"id": run_id}), FlowRun, "flow run", run_id)

    @staticmethod
    async def select_page(
        conn: db.Connection, flow_id: UUID, *, after_id: UUID | None, limit: int
    ) -> list[FlowRun]:
        """Up to ``limit`` runs of a flow after ``after_id`` in id order."""
        params = {"flow_id": flow_id, "after_id": after_id, "limit": limit}
        return many(await db.fetch_all(conn, _LIST_RUNS, params), FlowRun)

    @staticmethod
    async def refresh(conn: db.Connection, run_ids: Sequence[UUID]) -> list[FlowRun]:
        """Re-derive the state of unfinished runs from their tasks; returns the runs that changed."""
        if not run_ids:
            return []
        return many(await db.fetch_all(conn, _REFRESH_RUNS, {"run_ids": list(run_ids)}), FlowRun)
