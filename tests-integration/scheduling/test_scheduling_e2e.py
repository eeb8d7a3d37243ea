"""Schedules on a real server and real agents: an every-second cron runs each slot exactly once and on time,
``forbid`` skips the slots that come due while a three-second run goes, ``replace`` cancels the running one,
and events start every listening job with their payload.

One real server process and real agent processes on a real PostgreSQL (``pipelinefixtures``); everything is
observed through the REST API, including the fire-slot record (``GET /api/v1/schedules/{id}/slots``).
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelinefixtures import FINAL, AgentPool, Pipeline, wait_for
from schedulingfixtures import (
    api_slot_records,
    at,
    create_schedule,
    disable,
    first_second_after,
    schedule_tasks,
    wait_until,
)


def test_an_every_second_schedule_runs_every_slot_once_and_on_time(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agents.start(capacity=4)
    job_id = pipeline.create_job(suite=agents.suite, script="echo tick")
    schedule = create_schedule(pipeline, job_id, kind="cron", cron_expression="*/1 * * * * *")
    count = 8
    first = first_second_after(at(schedule["created_at"]))
    window = [first + timedelta(seconds=i) for i in range(count)]

    def all_done() -> dict[datetime, dict[str, Any]] | None:
        tasks = schedule_tasks(pipeline, schedule["id"])
        done = all(slot in tasks and tasks[slot]["status"] in FINAL for slot in window)
        return tasks if done else None

    wait_until(window[-1])
    tasks = wait_for(all_done, what="every slot of the window to have run")
    disable(pipeline, schedule["id"])
    records = api_slot_records(pipeline, schedule["id"])
    for slot in window:
        task = tasks[slot]
        assert task["status"] == "succeeded", task
        assert (records[slot]["outcome"], records[slot]["task_id"]) == ("ran", task["id"])
        (instance,) = pipeline.instances(task["id"])
        # The agent fires on its own timer at the slot: each run starts right at its second.
        late = (at(instance["started_at"]) - slot).total_seconds()
        assert -0.05 <= late < 1.0, f"slot {slot} started {late:.3f} s late"
    assert not [r for r in records.values() if r["outcome"] != "ran"]


def test_forbid_skips_slots_while_a_three_second_run_goes(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start(capacity=4)
    job_id = pipeline.create_job(suite=agents.suite, script="sleep 3", concurrency="forbid")
    schedule = create_schedule(pipeline, job_id, kind="cron", cron_expression="* * * * * *")
    count = 10
    first = first_second_after(at(schedule["created_at"]))
    window = [first + timedelta(seconds=i) for i in range(count)]
    wait_until(window[-1] + timedelta(seconds=0.5))
    disable(pipeline, schedule["id"])

    def settled() -> dict[datetime, dict[str, Any]] | None:
        tasks = schedule_tasks(pipeline, schedule["id"])
        return tasks if all(slot in tasks and tasks[slot]["status"] in FINAL for slot in window) else None

    tasks = wait_for(settled, what="the window's runs to end")
    records = api_slot_records(pipeline, schedule["id"])
    outcomes = [records[slot]["outcome"] for slot in window]
    assert set(outcomes) <= {"ran", "skipped_overlap"}, outcomes
    runs = []
    for slot in window:
        task = tasks[slot]
        if records[slot]["outcome"] == "ran":
            assert task["status"] == "succeeded"
            (instance,) = pipeline.instances(task["id"])
            runs.append((slot, at(instance["started_at"]), at(instance["completed_at"])))
        else:
            assert task["status"] == "skipped"
            assert task["instance_id"] is None
    # Never two runs at once, and a slot is skipped only while a run goes.
    for (_, _, ended), (_, started, _) in itertools.pairwise(runs):
        assert ended <= started
    for slot, outcome in zip(window, outcomes, strict=True):
        if outcome == "skipped_overlap":
            assert any(
                run_slot < slot and started <= slot + timedelta(seconds=1) and ended >= slot
                for run_slot, started, ended in runs
            ), slot
    # A three-second run every second: one slot in three or four runs, the first always does.
    assert outcomes[0] == "ran"
    assert count // 4 <= len(runs) <= count // 3 + 1, outcomes


def test_replace_cancels_the_running_run_for_the_new_slot(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start(capacity=4)
    job_id = pipeline.create_job(suite=agents.suite, script="sleep 30", concurrency="replace")
    schedule = create_schedule(pipeline, job_id, kind="interval", interval_secs=2)
    first = datetime.fromtimestamp(2 * math.floor(at(schedule["created_at"]).timestamp() / 2) + 2, UTC)
    window = [first + timedelta(seconds=2 * i) for i in range(3)]
    wait_until(window[-1] + timedelta(seconds=0.5))
    disable(pipeline, schedule["id"])

    def replaced() -> dict[datetime, dict[str, Any]] | None:
        tasks = schedule_tasks(pipeline, schedule["id"])
        statuses = [tasks[slot]["status"] if slot in tasks else None for slot in window]
        return tasks if statuses == ["cancelled", "cancelled", "running"] else None

    tasks = wait_for(replaced, what="the two older runs to be replaced")
    records = api_slot_records(pipeline, schedule["id"])
    assert [records[slot]["outcome"] for slot in window] == ["ran", "ran", "ran"]
    for older, newer in itertools.pairwise(window):
        assert f"replaced by the slot at {newer.isoformat()}" in tasks[older]["error"]
        # The agent stopped the replaced process: its attempt ended cancelled.
        wait_for(
            lambda slot=older: pipeline.instances(tasks[slot]["id"])[0]["status"] == "cancelled",
            what=f"the run of {older} to be stopped on the agent",
        )
    pipeline.call("POST", f"/tasks/{tasks[window[-1]]['id']}/cancel")


def test_an_event_starts_every_listening_enabled_job_with_its_payload(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agents.start(capacity=4)
    event = f"deploy-{agents.suite}"
    script = 'echo "params=$HETUFLOW_PARAMS"'
    with_params = pipeline.create_job(suite=agents.suite, script=script)
    plain = pipeline.create_job(suite=agents.suite, script=script)
    paused = pipeline.create_job(suite=agents.suite, script=script)
    elsewhere = pipeline.create_job(suite=agents.suite, script=script)
    create_schedule(pipeline, with_params, kind="event", event_name=event, parameters={"env": "prod", "x": 1})
    create_schedule(pipeline, plain, kind="event", event_name=event)
    create_schedule(pipeline, paused, kind="event", event_name=event, status="disabled")
    create_schedule(pipeline, elsewhere, kind="event", event_name=f"other-{agents.suite}")

    fired = pipeline.call("POST", f"/events/{event}", json={"version": "1.2", "x": 2}, expect=201)
    assert len(fired["task_ids"]) == 2
    outputs = {}
    for task_id in fired["task_ids"]:
        task = pipeline.wait_task(task_id)
        assert task["status"] == "succeeded"
        assert task["schedule_id"] is None
        (instance,) = pipeline.instances(task_id)
        outputs[task["job_id"]] = json.loads(instance["output"].split("params=", 1)[1])
    # The payload overlays the schedule's own parameters and reaches the process as HETUFLOW_PARAMS.
    assert outputs == {
        with_params: {"env": "prod", "x": 2, "version": "1.2"},
        plain: {"version": "1.2", "x": 2},
    }
    assert pipeline.call("POST", "/events/nobody-listens-here", json={}, expect=201) == {"task_ids": []}

    # A job runs now with parameters when triggered, schedule or not.
    triggered = pipeline.trigger(paused, parameters={"manual": True})
    assert pipeline.wait_task(triggered)["status"] == "succeeded"
    (instance,) = pipeline.instances(triggered)
    assert json.loads(instance["output"].split("params=", 1)[1]) == {"manual": True}
