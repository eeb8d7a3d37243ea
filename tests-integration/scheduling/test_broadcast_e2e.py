"""Broadcast routing and pinned tasks with a real server and real agent processes: a broadcast job runs
exactly once on every matching agent (from a trigger and from a schedule slot), a task pinned to an agent
never runs anywhere else and waits for that agent, and a broadcast that finds no agent leaves one task that
waits."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelinefixtures import AgentPool, Pipeline, wait_for
from schedulingfixtures import create_schedule

SCRIPT = 'echo "ran $HETUFLOW_TASK_ID"'


def _job(pipeline: Pipeline, suite: str, target: dict[str, Any]) -> str:
    labels = {"suite": suite, **target.pop("labels", {})}
    body = {
        "name": f"broadcast-{time.monotonic_ns()}",
        "config": {"command": "bash", "script": SCRIPT, "target": {"labels": labels, **target}},
    }
    return str(pipeline.call("POST", "/jobs", json=body, expect=201)["id"])


def _ran_on(pipeline: Pipeline, task_ids: list[str]) -> list[str]:
    """Wait for the tasks to succeed; the agent each ran on (one attempt each), in order."""
    agents = []
    for task_id in task_ids:
        task = pipeline.wait_task(task_id)
        assert task["status"] == "succeeded", task
        [instance] = pipeline.instances(task_id)
        assert instance["agent_id"] == task["agent_id"] == task["config"]["target"]["agent_id"]
        assert f"ran {task_id}" in "".join(chunk["content"] for chunk in pipeline.logs(instance["id"]))
        agents.append(str(task["agent_id"]))
    return agents


def test_broadcast_runs_once_on_each_matching_agent(pipeline: Pipeline, agents: AgentPool) -> None:
    red1, red2 = agents.start(labels={"colour": "red"}), agents.start(labels={"colour": "red"})
    agents.start(labels={"colour": "blue"})
    job_id = _job(pipeline, agents.suite, {"labels": {"colour": "red"}, "routing": "broadcast"})

    task_ids = pipeline.call("POST", f"/jobs/{job_id}/trigger", json={}, expect=201)["task_ids"]
    assert len(task_ids) == 2
    assert sorted(_ran_on(pipeline, task_ids)) == sorted([red1.agent_id, red2.agent_id])

    # A schedule slot fans out the same way: one task per red agent at the slot's instant.
    fire_at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    schedule = create_schedule(pipeline, job_id, kind="once", start_time=fire_at.isoformat())

    def planned() -> list[dict[str, Any]] | None:
        page = pipeline.call("GET", "/tasks", params={"schedule_id": schedule["id"]})["items"]
        return list(page) if len(page) == 2 else None

    slot_tasks = wait_for(planned, what="the generator to plan the slot")
    assert {datetime.fromisoformat(task["scheduled_at"]) for task in slot_tasks} == {fire_at}
    assert sorted(_ran_on(pipeline, [task["id"] for task in slot_tasks])) == sorted(
        [red1.agent_id, red2.agent_id]
    )
    assert len(pipeline.call("GET", f"/tasks?job_id={job_id}")["items"]) == 4


def test_pinned_task_runs_only_on_its_agent(pipeline: Pipeline, agents: AgentPool) -> None:
    idle = agents.start(capacity=4)
    chosen_id = f"{agents.suite}-pinned"
    job_id = _job(pipeline, agents.suite, {"agent_id": chosen_id})
    waiting = [pipeline.trigger(job_id) for _ in range(3)]
    time.sleep(1.5)  # the idle agent matches every label and has free slots, yet takes none of them
    assert {pipeline.task(task_id)["status"] for task_id in waiting} == {"pending"}

    agents.start(chosen_id)
    assert _ran_on(pipeline, waiting) == [chosen_id] * 3
    assert pipeline.call("GET", f"/tasks?agent_id={idle.agent_id}")["items"] == []


def test_broadcast_without_a_matching_agent_leaves_one_waiting_task(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    job_id = _job(pipeline, agents.suite, {"labels": {"colour": "green"}, "routing": "broadcast"})
    [task_id] = pipeline.call("POST", f"/jobs/{job_id}/trigger", json={}, expect=201)["task_ids"]
    task = pipeline.task(task_id)
    assert task["status"] == "pending"
    assert task["config"]["target"]["agent_id"] is None
    # The first matching agent to appear runs it.
    green = agents.start(labels={"colour": "green"})
    assert pipeline.wait_task(task_id)["agent_id"] == green.agent_id
