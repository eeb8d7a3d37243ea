"""Flow runs inside a caller's transaction: validate a DAG, start a run, cancel it, retry it, read its steps.

A run is started with the steps of its flow as they are at that moment (stored on the run): one task per step
(origin ``flow``), each listing the tasks of the steps it depends on and carrying the step's trigger rule and
timeout override. The API, the task generator (scheduled flows) and events all start runs through
``start_run``. A cancel skips the run's pending steps, cancels the rest (the agents are told to kill the
processes) and ends the run ``cancelled``. A retry re-runs, with each job's current config, every step that
did not succeed and every step after one of those; the steps that succeeded before are kept, and the run goes
on under the same id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import FlowRunStatus, TaskStatus, TriggerRule
from hetuflow_core.flow import Flow, FlowRun, FlowStep
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.task import Task
from hetuflow_core.types import Parameters
from hetuflow_server.errors import Conflict, IllegalTransition, NotFound
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.service import new_tasks
from hetuflow_server.service._validation import invalid

__all__ = ["cancel_run", "retry_run", "start_run", "topological_order", "validate_steps", "with_steps"]

_ON_AGENT = frozenset({TaskStatus.DISPATCHED, TaskStatus.RUNNING})
_LIVE_RUN = frozenset({FlowRunStatus.PENDING, FlowRunStatus.RUNNING})


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


async def validate_steps(conn: db.Connection, steps: Sequence[FlowStep]) -> None:
    """InvalidInput naming the step unless ``steps`` are a DAG of live jobs whose trigger rules make sense."""
    topological_order(steps)
    for i, step in enumerate(steps):
        if step.trigger_rule is not TriggerRule.ALL_SUCCESS and not step.depends_on:
            raise invalid(
                f"$.steps[{i}].trigger_rule", f"{step.trigger_rule} judges dependencies; this step has none"
            )
        try:
            await bmc.JobBmc.get(conn, step.job_id)
        except NotFound:
            raise invalid(f"$.steps[{i}].job_id", f"no job {step.job_id}") from None


async def start_run(
    conn: db.Connection,
    flow: Flow,
    parameters: Parameters,
    *,
    by: str | None,
    schedule_id: UUID | None = None,
    scheduled_at: datetime | None = None,
    run_id: UUID | None = None,
) -> FlowRun:
    """A new run of ``flow`` (with ``run_id``, or a fresh id) with its steps' tasks, the dispatchers woken at
    commit; Conflict when a step's job was deleted since the flow was stored."""
    run = await bmc.FlowRunBmc.insert(
        conn,
        uuid7() if run_id is None else run_id,
        flow_id=flow.id,
        parameters=parameters,
        steps=flow.steps,
        by=by,
        schedule_id=schedule_id,
        scheduled_at=scheduled_at,
    )
    await _step_tasks(conn, run, flow.steps, kept={}, by=by)
    (run,) = await with_steps(conn, [run])
    return run


async def cancel_run(conn: db.Connection, run_id: UUID, *, reason: str) -> FlowRun:
    """Skip the run's pending steps, cancel its others (killing their processes) and end it ``cancelled``;
    IllegalTransition when it already ended."""
    locked = await bmc.FlowRunBmc.lock(conn, run_id)
    if locked.run.status not in _LIVE_RUN:
        raise IllegalTransition(f"flow run {run_id} is {locked.run.status}; it cannot be cancelled")
    changes = [
        bmc.TaskChange(
            task_id=task.id,
            status=TaskStatus.SKIPPED if task.status is TaskStatus.PENDING else TaskStatus.CANCELLED,
            instance_id=task.instance_id if task.status in _ON_AGENT else None,
            error=reason,
        )
        for task in await bmc.FlowRunBmc.lock_tasks(conn, run_id)
        if not task.status.is_final
    ]
    for outcome in await bmc.TaskBmc.transition_many(conn, changes):
        if outcome.status is TaskStatus.CANCELLED and outcome.instance_id and outcome.agent_id:
            await notify.cancel_on_agent(
                conn, agent_id=outcome.agent_id, instance_id=outcome.instance_id, reason=reason
            )
    ended = await bmc.FlowRunBmc.end(conn, run_id, FlowRunStatus.CANCELLED)
    assert ended is not None, "the run is locked and was live"
    return ended


async def retry_run(conn: db.Connection, run_id: UUID, *, by: str | None) -> FlowRun:
    """Re-run the steps of a failed or cancelled run from the first that did not succeed on (see the module
    docstring); IllegalTransition for a run in another state or whose step's job was deleted."""
    locked = await bmc.FlowRunBmc.lock(conn, run_id)
    if locked.run.status not in (FlowRunStatus.FAILED, FlowRunStatus.CANCELLED):
        raise IllegalTransition(
            f"flow run {run_id} is {locked.run.status}; only failed or cancelled runs can be retried"
        )
    current: dict[str, list[Task]] = {}
    for task in await bmc.FlowRunBmc.lock_tasks(conn, run_id):
        if task.flow_step is not None:
            current.setdefault(task.flow_step, []).append(task)
    specs = locked.step_specs
    rerun: set[str] = set()
    for index in topological_order(specs):
        step = specs[index]
        tasks = current.get(step.name, [])
        succeeded = bool(tasks) and all(t.status is TaskStatus.SUCCEEDED for t in tasks)
        if not succeeded or rerun & set(step.depends_on):
            rerun.add(step.name)
    kept = {name: tasks for name, tasks in current.items() if name not in rerun}
    replaced = {name: tasks[0].id for name, tasks in current.items() if name in rerun}
    try:
        await _step_tasks(conn, locked.run, specs, kept=kept, replaced=replaced, by=by)
    except Conflict as exc:
        raise IllegalTransition(str(exc)) from None
    reopened = await bmc.FlowRunBmc.reopen(conn, run_id)
    assert reopened is not None, "the run is locked and had ended"
    return reopened


async def with_steps(conn: db.Connection, runs: Sequence[FlowRun]) -> list[FlowRun]:
    """``runs`` with the current task of each of their steps."""
    steps = await bmc.FlowRunBmc.steps(conn, [run.id for run in runs])
    return [msgspec.structs.replace(run, steps=steps.get(run.id, [])) for run in runs]


async def _step_tasks(
    conn: db.Connection,
    run: FlowRun,
    specs: Sequence[FlowStep],
    *,
    kept: Mapping[str, Sequence[Task]],
    replaced: Mapping[str, UUID] | None = None,
    by: str | None,
) -> list[Task]:
    """Insert the tasks of every step not in ``kept``, in dependency order, each depending on the tasks of its
    dependencies (new, or kept from before) and naming the task it re-runs (``replaced``); the tasks
    inserted."""
    now = datetime.now(UTC)
    task_ids: dict[str, list[UUID]] = {name: [task.id for task in tasks] for name, tasks in kept.items()}
    new: list[bmc.NewTask] = []
    for index in topological_order(specs):
        step = specs[index]
        if step.name in kept:
            continue
        try:
            job = await bmc.JobBmc.get(conn, step.job_id)
        except NotFound:
            raise Conflict(f"step {step.name!r} of flow {run.flow_id}: its job was deleted") from None
        step_tasks = await new_tasks.copies(
            conn,
            new_tasks.new_task(
                job.id,
                _step_config(job.config, step),
                origin=bmc.TaskOrigin.FLOW,
                scheduled_at=now,
                parameters={**step.parameters, **run.parameters},
                flow_run_id=run.id,
                flow_step=step.name,
                retry_of=(replaced or {}).get(step.name),
                depends_on=[task_id for dep in step.depends_on for task_id in task_ids[dep]],
                trigger_rule=step.trigger_rule,
            ),
        )
        task_ids[step.name] = [task.id for task in step_tasks]
        new.extend(step_tasks)
    created = await bmc.TaskBmc.insert_many(conn, new, by=by)
    await notify.work_added(conn)
    return created


def _step_config(config: JobConfig, step: FlowStep) -> JobConfig:
    """The job's config with the step's own timeout, if it has one."""
    if step.timeout_secs is None:
        return config
    return msgspec.structs.replace(config, timeout_secs=step.timeout_secs)
