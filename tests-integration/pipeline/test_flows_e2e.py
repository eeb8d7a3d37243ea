"""Flows end to end, with a real server and real agent processes: a diamond DAG (a → b, a → c, {b, c} → d)
runs in dependency order — every step writes its start and end time to a marker file — and its run succeeds;
a failing step (no retries) skips every step after it, the independent branch still runs, and the run fails;
a step of a broadcast job runs on every matching agent and the next step waits for all of them; and a run
whose step's job is deleted ends (its later steps skipped)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dbfixtures import MakeJob
from pipelinefixtures import AgentPool, Pipeline, wait_for

from hetuflow_core.api import TaskFilter
from hetuflow_core.enums import FlowRunStatus, TaskStatus
from hetuflow_core.flow import FlowCreate, FlowStep
from hetuflow_server.service import Services

FINAL_RUN = frozenset({"succeeded", "failed", "cancelled"})


def _step_job(pipeline: Pipeline, suite: str, markers: Path, name: str, *, fail: bool = False) -> str:
    """A job that records ``start``/``end`` times (ns) in ``markers/<name>.<task id>`` and runs 0.3 s."""
    script = (
        f'f={markers}/{name}.$HETUFLOW_TASK_ID; echo "start $(date +%s%N)" > "$f"; sleep 0.3; '
        f'echo "end $(date +%s%N)" >> "$f"; echo "params $HETUFLOW_PARAMS"; exit {3 if fail else 0}'
    )
    return pipeline.create_job(suite=suite, script=script)


def _flow(pipeline: Pipeline, steps: list[dict[str, Any]]) -> str:
    body = {"name": f"flow-{time.monotonic_ns()}", "steps": steps}
    return str(pipeline.call("POST", "/flows", json=body, expect=201)["id"])


def _wait_run(pipeline: Pipeline, flow_id: str, run_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run = pipeline.call("GET", f"/flows/{flow_id}/runs/{run_id}")
        return dict(run) if run["status"] in FINAL_RUN else None

    return wait_for(ended, what=f"flow run {run_id} to end")


def _tasks(pipeline: Pipeline, job_id: str) -> list[dict[str, Any]]:
    return list(pipeline.call("GET", "/tasks", params={"job_id": job_id})["items"])


def _times(markers: Path, name: str) -> list[tuple[int, int]]:
    """(start, end) of every run of step ``name``, from its marker files."""
    spans = []
    for path in sorted(markers.glob(f"{name}.*")):
        lines = dict(line.split() for line in path.read_text().splitlines())
        spans.append((int(lines["start"]), int(lines["end"])))
    return spans


def test_diamond_runs_in_dependency_order(pipeline: Pipeline, agents: AgentPool, tmp_path: Path) -> None:
    agents.start(capacity=4)
    jobs = {name: _step_job(pipeline, agents.suite, tmp_path, name) for name in "abcd"}
    flow_id = _flow(
        pipeline,
        [
            {"name": "d", "job_id": jobs["d"], "depends_on": ["b", "c"]},
            {"name": "b", "job_id": jobs["b"], "depends_on": ["a"], "parameters": {"who": "b", "n": 1}},
            {"name": "c", "job_id": jobs["c"], "depends_on": ["a"]},
            {"name": "a", "job_id": jobs["a"]},
        ],
    )
    run = pipeline.call("POST", f"/flows/{flow_id}/run", json={"parameters": {"n": 2}}, expect=201)
    assert run["status"] == "pending"

    done = _wait_run(pipeline, flow_id, run["id"])
    assert done["status"] == "succeeded"
    assert done["started_at"] is not None
    assert done["completed_at"] is not None
    [a], [b], [c], [d] = (_times(tmp_path, name) for name in "abcd")
    assert a[1] <= b[0]
    assert a[1] <= c[0]
    assert max(b[1], c[1]) <= d[0]
    for job_id in jobs.values():
        [task] = _tasks(pipeline, job_id)
        assert task["status"] == "succeeded"
        assert task["flow_run_id"] == run["id"]
    [b_task] = _tasks(pipeline, jobs["b"])
    [b_log] = pipeline.logs(pipeline.instances(b_task["id"])[0]["id"])
    assert '"who":"b"' in b_log["content"].replace(" ", "")
    assert '"n":2' in b_log["content"].replace(" ", "")  # the run's parameters win over the step's


def test_failed_step_skips_its_dependants_and_fails_the_run(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start(capacity=4)
    jobs = {name: _step_job(pipeline, agents.suite, tmp_path, name, fail=name == "b") for name in "abcde"}
    steps = [
        {"name": "a", "job_id": jobs["a"]},
        {"name": "b", "job_id": jobs["b"], "depends_on": ["a"]},
        {"name": "c", "job_id": jobs["c"], "depends_on": ["a"]},
        {"name": "d", "job_id": jobs["d"], "depends_on": ["b", "c"]},
        {"name": "e", "job_id": jobs["e"], "depends_on": ["d"]},
    ]
    flow_id = _flow(pipeline, steps)
    run = pipeline.call("POST", f"/flows/{flow_id}/run", expect=201)

    done = _wait_run(pipeline, flow_id, run["id"])
    assert done["status"] == "failed"
    statuses = {name: [task["status"] for task in _tasks(pipeline, job_id)] for name, job_id in jobs.items()}
    assert statuses == {
        "a": ["succeeded"],
        "b": ["failed"],
        "c": ["succeeded"],
        "d": ["skipped"],
        "e": ["skipped"],
    }
    [d_task] = _tasks(pipeline, jobs["d"])
    assert d_task["error"] == "a step it depends on did not succeed"
    assert pipeline.instances(d_task["id"]) == []  # never dispatched
    assert _times(tmp_path, "d") == []
    assert _times(tmp_path, "e") == []


def test_broadcast_step_runs_everywhere_before_the_next(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    for _ in range(2):
        agents.start(labels={"tier": "web"})
    fan_job = pipeline.call(
        "POST",
        "/jobs",
        json={
            "name": f"fan-{time.monotonic_ns()}",
            "config": {
                "command": "bash",
                "script": f'f={tmp_path}/fan.$HETUFLOW_TASK_ID; echo "start $(date +%s%N)" > "$f"; '
                f'sleep 0.3; echo "end $(date +%s%N)" >> "$f"',
                "target": {"labels": {"suite": agents.suite, "tier": "web"}, "routing": "broadcast"},
            },
        },
        expect=201,
    )["id"]
    after = _step_job(pipeline, agents.suite, tmp_path, "after")
    flow_id = _flow(
        pipeline,
        [{"name": "fan", "job_id": fan_job}, {"name": "after", "job_id": after, "depends_on": ["fan"]}],
    )
    run = pipeline.call("POST", f"/flows/{flow_id}/run", expect=201)
    assert _wait_run(pipeline, flow_id, run["id"])["status"] == "succeeded"
    fans = _tasks(pipeline, fan_job)
    assert len({task["agent_id"] for task in fans}) == 2
    [after_task] = _tasks(pipeline, after)
    assert sorted(after_task["depends_on"]) == sorted(task["id"] for task in fans)
    [(after_start, _)] = _times(tmp_path, "after")
    assert all(end <= after_start for _, end in _times(tmp_path, "fan"))


async def test_deleting_a_steps_job_ends_the_run(services: Services, make_job: MakeJob) -> None:
    first, second = await make_job(), await make_job()
    flow = await services.flows.create(
        FlowCreate(
            name=f"deleted-{time.monotonic_ns()}",
            steps=[
                FlowStep(name="first", job_id=first.id),
                FlowStep(name="second", job_id=second.id, depends_on=["first"]),
            ],
        )
    )
    run = await services.flows.run(flow.id)
    await services.jobs.delete(first.id)
    ended = await services.flows.get_run(run.id)
    assert ended.status is FlowRunStatus.CANCELLED
    page = await services.tasks.list(TaskFilter(job_id=second.id))
    assert [(task.status, task.flow_run_id) for task in page.items] == [(TaskStatus.SKIPPED, run.id)]


def test_flow_schedules_are_refused_with_a_reason(pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(script="true")
    response = pipeline.client.post("/api/v1/schedules", json={"job_id": job_id, "kind": "flow"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert error["path"] == "$.kind"
    assert "POST /api/v1/flows/{flow_id}/run" in error["message"]
    assert pipeline.call("GET", "/schedules", params={"job_id": job_id})["items"] == []
