"""FlowService: DAGs of job steps — create, change, enable/disable, delete — and their runs: start, cancel,
retry, read.

A run creates one task per step at once (origin ``flow``), each naming the tasks of the steps it depends on in
``depends_on``; the dispatcher claims a task once its dependencies satisfy its trigger rule (``all_success``:
all succeeded; ``all_done``: all ended; ``one_failed``: one failed). A step that can no longer start is
skipped, and the run's status follows its tasks. Step parameters are overlaid by the run's parameters (the
run is the more specific request). A step of a ``broadcast`` job is one task per matching online agent
(``service.new_tasks``), and the steps after it wait for all of them. A run keeps the steps it started with:
changing the flow never reaches a started run. Disabling a flow stops its schedules; deleting it (soft, like
a job) also cancels its live runs. How runs start, cancel and retry: ``service._flow_runs``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.enums import JobStatus
from hetuflow_core.flow import Flow, FlowCreate, FlowRun, FlowUpdate
from hetuflow_core.ids import uuid7
from hetuflow_server.errors import Conflict, NotFound
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service import _flow_runs
from hetuflow_server.service._flow_runs import topological_order
from hetuflow_server.service._paging import DEFAULT_LIMIT, decode_id_cursor, read_page
from hetuflow_server.service._validation import revalidate

__all__ = ["FlowService", "topological_order"]


class FlowService:
    """Flows and their runs."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def create(self, data: FlowCreate) -> Flow:
        """Store a validated flow; Conflict on a duplicate name, InvalidInput on a bad DAG."""
        data = revalidate(data, FlowCreate)
        async with self._db.transaction() as conn:
            await _flow_runs.validate_steps(conn, data.steps)
            new = bmc.NewFlow(
                name=data.name,
                description=data.description,
                status=data.status,
                concurrency=data.concurrency,
                steps=data.steps,
            )
            flow = await bmc.FlowBmc.insert(conn, uuid7(), new)
            await notify.schedules_changed(conn, flow_id=flow.id)
        return flow

    async def get(self, flow_id: UUID) -> Flow:
        """The live flow, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.FlowBmc.get(conn, flow_id)

    async def list(self, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> Page[Flow]:
        """A page of live flows in creation order."""
        return await read_page(
            self._db,
            cursor,
            limit,
            decode=decode_id_cursor,
            fetch=lambda conn, after, n: bmc.FlowBmc.select_page(conn, after_id=after, limit=n),
            key=lambda flow: (flow.id,),
        )

    async def update(self, flow_id: UUID, patch: FlowUpdate) -> Flow:
        """Change the given fields (PATCH); new ``steps`` are validated as on creation and reach only the
        runs started from now on."""
        patch = revalidate(patch, FlowUpdate)
        async with self._db.transaction() as conn:
            flow = await bmc.FlowBmc.get(conn, flow_id, lock=True)
            steps = flow.steps if patch.steps is msgspec.UNSET else patch.steps
            if patch.steps is not msgspec.UNSET:
                await _flow_runs.validate_steps(conn, steps)
            new = bmc.NewFlow(
                name=flow.name if patch.name is msgspec.UNSET else patch.name,
                description=flow.description if patch.description is msgspec.UNSET else patch.description,
                status=flow.status if patch.status is msgspec.UNSET else patch.status,
                concurrency=flow.concurrency if patch.concurrency is msgspec.UNSET else patch.concurrency,
                steps=steps,
            )
            updated = await bmc.FlowBmc.update(conn, flow_id, new)
            await notify.schedules_changed(conn, flow_id=flow_id)
        return updated

    async def enable(self, flow_id: UUID) -> Flow:
        """Let the flow run and its schedules fire again (no-op when already enabled)."""
        return await self.update(flow_id, FlowUpdate(status=JobStatus.ENABLED))

    async def disable(self, flow_id: UUID) -> Flow:
        """Stop the flow's schedules and refuse new runs; runs already started go on (no-op when disabled)."""
        return await self.update(flow_id, FlowUpdate(status=JobStatus.DISABLED))

    async def delete(self, flow_id: UUID, *, by: str | None = None) -> None:
        """Soft-delete the flow: its live runs are cancelled, its schedules disabled, its name freed; its runs
        stay readable by id."""
        reason = f"flow deleted by {by}" if by else "flow deleted"
        async with self._db.transaction() as conn:
            await bmc.FlowBmc.get(conn, flow_id, lock=True)
            for run in await bmc.FlowRunBmc.live(conn, flow_id=flow_id):
                await _flow_runs.cancel_run(conn, run.id, reason=reason)
            await bmc.ScheduleBmc.disable_flow(conn, flow_id)
            await bmc.FlowBmc.soft_delete(conn, flow_id)
            await notify.schedules_changed(conn, flow_id=flow_id)

    async def run(
        self, flow_id: UUID, parameters: dict[str, Any] | None = None, *, by: str | None = None
    ) -> FlowRun:
        """Start a run: one task per step, chained by ``depends_on``. Conflict when the flow is disabled or a
        step's job was deleted since."""
        async with self._db.transaction() as conn:
            flow = await bmc.FlowBmc.get(conn, flow_id)
            if flow.status is not JobStatus.ENABLED:
                raise Conflict(f"flow {flow_id} is disabled")
            return await _flow_runs.start_run(conn, flow, dict(parameters or {}), by=by)

    async def get_run(self, run_id: UUID, *, flow_id: UUID | None = None) -> FlowRun:
        """The run with its steps' tasks, or NotFound (also when it is not a run of ``flow_id``)."""
        async with self._db.transaction() as conn:
            run = await bmc.FlowRunBmc.get(conn, run_id)
            if flow_id is not None and run.flow_id != flow_id:
                raise NotFound("flow run", run_id)
            (run,) = await _flow_runs.with_steps(conn, [run])
        return run

    async def cancel_run(self, flow_id: UUID, run_id: UUID, *, by: str | None = None) -> FlowRun:
        """Cancel a pending or running run (pending steps skipped, running ones killed); IllegalTransition
        when it already ended."""
        reason = f"flow run cancelled by {by}" if by else "flow run cancelled"
        async with self._db.transaction() as conn:
            await self._run_of(conn, flow_id, run_id)
            run = await _flow_runs.cancel_run(conn, run_id, reason=reason)
            (run,) = await _flow_runs.with_steps(conn, [run])
        return run

    async def retry_run(self, flow_id: UUID, run_id: UUID, *, by: str | None = None) -> FlowRun:
        """Re-run a failed or cancelled run from the steps that did not succeed on; IllegalTransition
        otherwise."""
        async with self._db.transaction() as conn:
            await self._run_of(conn, flow_id, run_id)
            run = await _flow_runs.retry_run(conn, run_id, by=by)
            (run,) = await _flow_runs.with_steps(conn, [run])
        return run

    async def list_runs(
        self,
        flow_id: UUID,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
        newest_first: bool = False,
    ) -> Page[FlowRun]:
        """A page of the flow's runs with their steps, oldest first (``newest_first``: latest first); NotFound
        for an unknown flow."""

        async def fetch(conn: db.Connection, after: UUID | None, n: int) -> list[FlowRun]:
            await bmc.FlowBmc.get(conn, flow_id)  # NotFound for an unknown flow, no empty page
            if newest_first:
                runs = await bmc.FlowRunBmc.select_page_newest_first(conn, flow_id, before_id=after, limit=n)
            else:
                runs = await bmc.FlowRunBmc.select_page(conn, flow_id, after_id=after, limit=n)
            return await _flow_runs.with_steps(conn, runs)

        return await read_page(
            self._db, cursor, limit, decode=decode_id_cursor, fetch=fetch, key=lambda run: (run.id,)
        )

    @staticmethod
    async def _run_of(conn: db.Connection, flow_id: UUID, run_id: UUID) -> FlowRun:
        run = await bmc.FlowRunBmc.get(conn, run_id)
        if run.flow_id != flow_id:
            raise NotFound("flow run", run_id)
        return run
