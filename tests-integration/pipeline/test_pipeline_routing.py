"""Routing and capacity with real agents: required labels, and no agent ever holds more than its capacity."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime

from pipelinefixtures import AgentPool, Pipeline


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_gpu_task_waits_for_a_gpu_agent_and_never_runs_elsewhere(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    plain = agents.start()
    gpu_task = pipeline.trigger(
        pipeline.create_job(suite=agents.suite, labels={"gpu": "yes"}, script="echo gpu")
    )
    # Work the plain agent can take runs meanwhile: the dispatcher has looked, and passed the gpu task over.
    for task_id in [pipeline.run(suite=agents.suite, script="true") for _ in range(3)]:
        assert pipeline.wait_task(task_id)["agent_id"] == plain.agent_id
    time.sleep(1.0)
    assert pipeline.task(gpu_task)["status"] == "pending"
    assert pipeline.instances(gpu_task) == []

    gpu = agents.start(labels={"gpu": "yes"})
    task = pipeline.wait_task(gpu_task)
    assert task["status"] == "succeeded"
    assert [instance["agent_id"] for instance in pipeline.instances(gpu_task)] == [gpu.agent_id]


def test_two_agents_of_capacity_two_share_eight_tasks_without_exceeding_it(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    first = agents.start(capacity=2)
    second = agents.start(capacity=2)
    job_id = pipeline.create_job(suite=agents.suite, script="sleep 0.6")
    task_ids = [pipeline.trigger(job_id) for _ in range(8)]

    runs: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for task_id in task_ids:
        assert pipeline.wait_task(task_id)["status"] == "succeeded"
        (instance,) = pipeline.instances(task_id)
        runs[instance["agent_id"]].append((_at(instance["started_at"]), _at(instance["completed_at"])))

    assert set(runs) == {first.agent_id, second.agent_id}
    for agent_id, intervals in runs.items():
        assert _max_overlap(intervals) <= 2, (agent_id, intervals)
    # Eight runs of 0.6 s at most four at a time take at least 1.2 s: they did run side by side.
    assert _max_overlap([run for intervals in runs.values() for run in intervals]) >= 3


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at the same instant)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak
