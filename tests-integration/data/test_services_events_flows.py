"""EventService fan-out and FlowService: DAG validation, runs whose steps wait for their dependencies,
skipping after a failure, and the run's derived status."""

from __future__ import annotations

from uuid import UUID

import pytest
from dbfixtures import MakeJob

from hetuflow_core.api import TaskFilter
from hetuflow_core.enums import (
    CommandKind,
    FlowRunStatus,
    InstanceStatus,
    ScheduleKind,
    ScheduleStatus,
    TaskStatus,
)
from hetuflow_core.flow import FlowCreate, FlowStep
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import TaskInstanceUpdatedData
from hetuflow_core.schedule import ScheduleCreate
from hetuflow_server.errors import Conflict, InvalidInput, NotFound
from hetuflow_server.service import AgentCapacity, Services
from hetuflow_server.service.flows import topological_order

AGENT = AgentCapacity(agent_id="flow-agent", labels={}, commands=[CommandKind.BASH], free_slots=100)


def _path(exc: InvalidInput) -> str:
    return exc.fields[0].path


async def test_event_fires_every_enabled_listener(services: Services, make_job: MakeJob) -> None:
    listening = [await make_job(priority=3), await make_job()]
    for job in listening:
        await services.schedules.create(
            ScheduleCreate(
                job_id=job.id, kind=ScheduleKind.EVENT, event_name="deploy", parameters={"env": "dev", "k": 1}
            )
        )
    disabled_job = await make_job()
    await services.schedules.create(
        ScheduleCreate(job_id=disabled_job.id, kind=ScheduleKind.EVENT, event_name="deploy")
    )
    await services.jobs.disable(disabled_job.id)
    quiet = await make_job()
    await services.schedules.create(
        ScheduleCreate(
            job_id=quiet.id, kind=ScheduleKind.EVENT, event_name="deploy", status=ScheduleStatus.DISABLED
        )
    )
    other = await make_job()
    await services.schedules.create(
        ScheduleCreate(job_id=other.id, kind=ScheduleKind.EVENT, event_name="other")
    )

    result = await services.events.fire("deploy", {"env": "prod"}, by="hook")
    tasks = [await services.tasks.get(task_id) for task_id in result.task_ids]
    assert {t.job_id for t in tasks} == {job.id for job in listening}
    assert all(t.parameters == {"env": "prod", "k": 1} for t in tasks)
    assert all(t.schedule_id is None and t.status is TaskStatus.PENDING for t in tasks)
    assert {t.priority for t in tasks} == {3, 0}
    assert (await services.events.fire("nobody-listens", {})).task_ids == []


@pytest.mark.parametrize(("name", "payload", "path"), [("bad name", {}, "$.name"), ("ok", [1], "$")])
async def test_bad_event_is_invalid(name: str, payload: object, path: str, services: Services) -> None:
    with pytest.raises(InvalidInput) as info:
        await services.events.fire(name, payload)  # type: ignore[arg-type]
    assert _path(info.value) == path


def _step(name: str, job_id: UUID, *deps: str) -> FlowStep:
    return FlowStep(name=name, job_id=job_id, depends_on=list(deps))


def test_topological_order_and_dag_errors() -> None:
    j = uuid7()
    steps = [_step("d", j, "b", "c"), _step("b", j, "a"), _step("a", j), _step("c", j, "a")]
    order = [steps[i].name for i in topological_order(steps)]
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")
    cases = [
        ([_step("a", j), _step("a", j)], "$.steps[1].name", "duplicate"),
        ([_step("a", j, "zz")], "$.steps[0].depends_on[0]", "no step"),
        ([_step("a", j, "a")], "$.steps[0].depends_on[0]", "itself"),
        (
            [_step("a", j, "c"), _step("b", j, "a"), _step("c", j, "b")],
            "$.steps[1].depends_on[0]",  # b depending on a closes the cycle
            "a -> c -> b -> a",
        ),
    ]
    for bad, path, words in cases:
        with pytest.raises(InvalidInput, match=words) as info:
            topological_order(bad)
        assert _path(info.value) == path


async def test_flow_create_get_list(services: Services, make_job: MakeJob) -> None:
    job = await make_job()
    flow = await services.flows.create(
        FlowCreate(name="pipeline", steps=[_step("a", job.id), _step("b", job.id, "a")])
    )
    assert await services.flows.get(flow.id) == flow
    with pytest.raises(Conflict):
        await services.flows.create(FlowCreate(name="pipeline", steps=[_step("a", job.id)]))
    with pytest.raises(InvalidInput) as info:
        await services.flows.create(FlowCreate(name="ghost", steps=[_step("a", job.id), _step("b", uuid7())]))
    assert _path(info.value) == "$.steps[1].job_id"
    with pytest.raises(InvalidInput) as info:
        await services.flows.create(FlowCreate(name="empty", steps=[]))
    assert _path(info.value) == "$.steps"
    assert flow.id in {f.id for f in (await services.flows.list()).items}
    with pytest.raises(NotFound):
        await services.flows.get(uuid7())
    with pytest.raises(NotFound):
        await services.flows.run(uuid7())


async def _run_step(
    services: Services, expected: set[str], status: InstanceStatus, steps: dict[UUID, str]
) -> None:
    """Dispatch what is claimable, check it is exactly the steps ``expected``, finish them with ``status``."""
    dispatched = await services.dispatch.dispatch([_agent(steps)])
    assert {steps[d.task.job_id] for d in dispatched} == expected
    reports = []
    for d in dispatched:
        exit_code = 0 if status is InstanceStatus.SUCCEEDED else 1
        for seq, state in ((1, InstanceStatus.RUNNING), (2, status)):
            reports.append(
                TaskInstanceUpdatedData(
                    instance_id=d.instance.id, task_id=d.task.id, status=state, seq=seq, exit_code=exit_code
                )
            )
    await services.dispatch.apply_reports(reports, agent_id=AGENT.agent_id)


def _agent(steps: dict[UUID, str]) -> AgentCapacity:
    """An agent that can run exactly the tasks of the flow of ``steps`` (named by the flow's label)."""
    return AgentCapacity(
        agent_id=AGENT.agent_id,
        labels={"flow": _FLOW_OF[next(iter(steps))]},
        commands=[CommandKind.NODE],
        free_slots=100,
    )


_FLOW_OF: dict[UUID, str] = {}


async def _flow(
    services: Services, make_job: MakeJob, name: str, edges: dict[str, list[str]]
) -> tuple[UUID, dict[UUID, str]]:
    """A flow whose every step runs its own job (so tasks map back to steps by job id)."""
    # Flow steps run `node` (only the flow agent runs it) so other tests' pending bash tasks stay out of the
    # way.
    jobs = {
        step: await make_job(command="node", script="1", target={"labels": {"flow": name}}) for step in edges
    }
    flow = await services.flows.create(
        FlowCreate(name=name, steps=[_step(step, jobs[step].id, *deps) for step, deps in edges.items()])
    )
    _FLOW_OF.update({job.id: name for job in jobs.values()})
    return flow.id, {job.id: step for step, job in jobs.items()}


async def _statuses(services: Services, steps: dict[UUID, str]) -> dict[str, TaskStatus]:
    found: dict[str, TaskStatus] = {}
    for job_id, step in steps.items():
        (task,) = (await services.tasks.list(TaskFilter(job_id=job_id))).items
        found[step] = task.status
    return found


async def test_flow_run_follows_its_dag(services: Services, make_job: MakeJob) -> None:
    flow_id, steps = await _flow(
        services, make_job, "diamond", {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    )
    run = await services.flows.run(flow_id, {"release": "1.2"}, by="gina")
    assert run.status is FlowRunStatus.PENDING
    (first,) = (await services.tasks.list(TaskFilter(job_id=next(iter(steps))))).items
    assert (first.parameters, first.flow_run_id) == ({"release": "1.2"}, run.id)
    await _run_step(services, {"a"}, InstanceStatus.SUCCEEDED, steps)
    assert (await services.flows.get_run(run.id)).status is FlowRunStatus.RUNNING
    await _run_step(services, {"b", "c"}, InstanceStatus.SUCCEEDED, steps)
    await _run_step(services, {"d"}, InstanceStatus.SUCCEEDED, steps)
    done = await services.flows.get_run(run.id)
    assert done.status is FlowRunStatus.SUCCEEDED
    assert done.completed_at is not None
    assert [r.id for r in (await services.flows.list_runs(flow_id)).items] == [run.id]
    with pytest.raises(NotFound):
        await services.flows.get_run(uuid7())


async def test_failed_step_skips_its_dependents(services: Services, make_job: MakeJob) -> None:
    flow_id, steps = await _flow(services, make_job, "chain", {"a": [], "b": ["a"], "c": ["b"], "x": []})
    run = await services.flows.run(flow_id)
    await _run_step(services, {"a", "x"}, InstanceStatus.FAILED, steps)
    assert await _statuses(services, steps) == {
        "a": TaskStatus.FAILED,
        "b": TaskStatus.SKIPPED,
        "c": TaskStatus.SKIPPED,
        "x": TaskStatus.FAILED,
    }
    assert (await services.flows.get_run(run.id)).status is FlowRunStatus.FAILED
    assert await services.dispatch.dispatch([_agent(steps)]) == []


async def test_cancelled_step_cancels_the_run(services: Services, make_job: MakeJob) -> None:
    flow_id, steps = await _flow(services, make_job, "cancel-me", {"a": [], "b": ["a"]})
    run = await services.flows.run(flow_id)
    (task,) = (await services.tasks.list(TaskFilter(job_id=next(iter(steps))))).items
    await services.tasks.cancel(task.id)
    assert await _statuses(services, steps) == {"a": TaskStatus.CANCELLED, "b": TaskStatus.SKIPPED}
    assert (await services.flows.get_run(run.id)).status is FlowRunStatus.CANCELLED


async def test_run_of_flow_whose_job_was_deleted_conflicts(services: Services, make_job: MakeJob) -> None:
    flow_id, steps = await _flow(services, make_job, "orphan", {"a": []})
    await services.jobs.delete(next(iter(steps)))
    with pytest.raises(Conflict, match="deleted"):
        await services.flows.run(flow_id)
