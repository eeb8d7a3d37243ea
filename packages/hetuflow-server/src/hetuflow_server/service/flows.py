"""FlowService: DAGs of job steps, validated on creation, and their runs.

A run creates one task per step at once (origin ``flow``), each naming the tasks of the steps it depends on in
``depends_on``; the dispatcher only claims a task whose dependencies all succeeded. A step whose dependency
failed, was cancelled or was skipped is skipped, and the run's status follows its tasks. Step parameters are
overlaid by the run's parameters (the run is the more specific request). A step of a ``broadcast`` job is one
task per matching online agent (``service.new_tasks``), and the steps after it wait for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from hetuflow_core.api import Page
from hetuflow_core.enums import JobStatus
from hetuflow_core.flow import Flow, FlowCreate, FlowRun, FlowStep
from hetuflow_core.ids import uuid7
from hetuflow_server.errors import Conflict, NotFound
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service import new_tasks
from hetuflow_server.service._paging import DEFAULT_LIMIT, decode_id_cursor, read_page
from hetuflow_server.service._validation import invalid, revalidate

__all__ = ["FlowService", "topological_order"]


def topological_order(steps: Sequence[FlowStep]) -> list[int]:
    """Indexes of ``steps`` with every step after its dependencies; InvalidInput naming the first problem
    (duplicate name, unknown or self dependency, cycle) by its JSON path."""
    index_of: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.name in index_of:
            raise invalid(f"$.steps[{i}].name", f"duplicate step name {step.name!r}")
        index_of[step.name] = i
    for i, step in enumerate(steps):
        for j, dep in enumerate(step.depends_on):
            if dep == step.name:
                raise invalid(f"$.steps[{i}].depends_on[{j}]", "a step cannot depend on itself")
            if dep not in index_of:
                raise invalid(f"$.steps[{i}].depends_on[{j}]", f"no step named {dep!r}")
    # Depth-first search with colours; a grey node reached again closes a cycle.
    white, grey, black = 0, 1, 2
    colour = [white] * len(steps)
    order: list[int] = []
    for root in range(len(steps)):
        if colour[root] != white:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        colour[root] = grey
        while stack:
            node, next_dep = stack[-1]
            deps = steps[node].depends_on
            if next_dep < len(deps):
                stack[-1] = (node, next_dep + 1)
                child = index_of[deps[next_dep]]
                if colour[child] == grey:
                    path = [steps[n].name for n, _ in stack[[n for n, _ in stack].index(child) :]]
                    cycle = " -> ".join([*path, steps[child].name])
                    raise invalid(f"$.steps[{node}].depends_on[{next_dep}]", f"dependency cycle: {cycle}")
                if colour[child] == white:
                    colour[child] = grey
                    stack.append((child, 0))
            else:
                colour[node] = black
                order.append(node)
                stack.pop()
    return order


class FlowService:
    """Flows and their runs."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def create(self, data: FlowCreate) -> Flow:
        """Store a validated flow; Conflict on a duplicate name, InvalidInput on a bad DAG."""
        data = revalidate(data, FlowCreate)
        topological_order(data.steps)
        async with self._db.transaction() as conn:
            for i, step in enumerate(data.steps):
                try:
                    await bmc.JobBmc.get(conn, step.job_id)
                except NotFound:
                    raise invalid(f"$.steps[{i}].job_id", f"no job {step.job_id}") from None
            return await bmc.FlowBmc.insert(conn, uuid7(), data)

    async def get(self, flow_id: UUID) -> Flow:
        """The flow, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.FlowBmc.get(conn, flow_id)

    async def list(self, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> Page[Flow]:
        """A page of flows in creation order."""
        return await read_page(
            self._db,
            cursor,
            limit,
            decode=decode_id_cursor,
            fetch=lambda conn, after, n: bmc.FlowBmc.select_page(conn, after_id=after, limit=n),
            key=lambda flow: (flow.id,),
        )

    async def run(
        self, flow_id: UUID, parameters: dict[str, Any] | None = None, *, by: str | None = None
    ) -> FlowRun:
        """Start a run: one task per step, chained by ``depends_on``. Conflict when the flow is disabled or a
        step's job was deleted since."""
        params = dict(parameters or {})
        async with self._db.transaction() as conn:
            flow = await bmc.FlowBmc.get(conn, flow_id)
            if flow.status is not JobStatus.ENABLED:
                raise Conflict(f"flow {flow_id} is disabled")
            run = await bmc.FlowRunBmc.insert(conn, uuid7(), flow_id=flow_id, parameters=params, by=by)
            now = datetime.now(UTC)
            task_ids: dict[str, list[UUID]] = {}
            tasks: list[bmc.NewTask] = []
            for index in topological_order(flow.steps):
                step = flow.steps[index]
                try:
                    job = await bmc.JobBmc.get(conn, step.job_id)
                except NotFound:
                    raise Conflict(f"step {step.name!r} of flow {flow_id}: its job was deleted") from None
                step_tasks = await new_tasks.copies(
                    conn,
                    new_tasks.new_task(
                        job.id,
                        job.config,
                        origin=bmc.TaskOrigin.FLOW,
                        scheduled_at=now,
                        parameters={**step.parameters, **params},
                        flow_run_id=run.id,
                        flow_step=step.name,
                        depends_on=[task_id for dep in step.depends_on for task_id in task_ids[dep]],
                    ),
                )
                task_ids[step.name] = [task.id for task in step_tasks]
                tasks.extend(step_tasks)
            await bmc.TaskBmc.insert_many(conn, tasks, by=by)
            await notify.work_added(conn)
        return run

    async def get_run(self, run_id: UUID) -> FlowRun:
        """The run, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.FlowRunBmc.get(conn, run_id)

    async def list_runs(
        self, flow_id: UUID, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT
    ) -> Page[FlowRun]:
        """A page of the flow's runs, oldest first; NotFound for an unknown flow."""

        async def fetch(conn: db.Connection, after: UUID | None, n: int) -> list[FlowRun]:
            await bmc.FlowBmc.get(conn, flow_id)  # NotFound for an unknown flow, no empty page
            return await bmc.FlowRunBmc.select_page(conn, flow_id, after_id=after, limit=n)

        return await read_page(
            self._db, cursor, limit, decode=decode_id_cursor, fetch=fetch, key=lambda run: (run.id,)
        )
