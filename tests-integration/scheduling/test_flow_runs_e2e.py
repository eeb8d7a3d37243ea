"""Flows as first-class workflows on a real server and real agents, observed through the REST API: a
cron-scheduled flow fires once per slot, each run's steps in dependency order and its slot recorded with the
run; cancelling a running run kills its step's process and skips what comes after; ``all_done`` cleanup and
``one_failed`` alert steps run after a failure (and the alert is skipped when nothing fails); a failed run is
retried from the failed step on, keeping the steps that succeeded; a step's ``timeout_secs`` overrides its
job's.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipelinefixtures import AgentPool, Pipeline, wait_for
from schedulingfixtures import api_slot_records, at, create_schedule, disable, first_second_after, wait_until

FINAL_RUN = frozenset({"succeeded", "failed", "cancelled"})
_FAIL_IF = "if [ -e {} ]; then exit 3; fi"
"""A step's tail that fails while the given switch file exists."""


def _step_job(pipeline: Pipeline, suite: str, markers: Path, name: str, *, tail: str = "exit 0") -> str:
    """A job that records ``start``/``end`` times (ns) in ``markers/<name>.<task id>``, then runs ``tail``."""
    script = (
        f'f={markers}/{name}.$HETUFLOW_TASK_ID; echo "start $(date +%s%N)" > "$f"; sleep 0.2; '
        f'echo "end $(date +%s%N)" >> "$f"; {tail}'
    )
    return pipeline.create_job(suite=suite, script=script)


def _flow(pipeline: Pipeline, steps: list[dict[str, Any]], **fields: Any) -> str:
    body = {"name": f"flow-{time.monotonic_ns()}", "steps": steps, **fields}
    return str(pipeline.call("POST", "/flows", json=body, expect=201)["id"])


def _wait_run(pipeline: Pipeline, flow_id: str, run_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run = pipeline.call("GET", f"/flows/{flow_id}/runs/{run_id}")
        return dict(run) if run["status"] in FINAL_RUN else None

    return wait_for(ended, what=f"flow run {run_id} to end")


def _span(markers: Path, name: str, task_id: str) -> tuple[int, int]:
    """(start, end) of the run of step ``name`` as task ``task_id``, from its marker file."""
    lines = dict(line.split() for line in (markers / f"{name}.{task_id}").read_text().splitlines())
    return int(lines["start"]), int(lines["end"])


def _by_step(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in run["steps"]}


def test_a_cron_scheduled_flow_starts_one_run_per_slot_with_its_steps_in_order(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start(capacity=4)
    jobs = {name: _step_job(pipeline, agents.suite, tmp_path, name) for name in ("extract", "load")}
    flow_id = _flow(
        pipeline,
        [
            {"name": "load", "job_id": jobs["load"], "depends_on": ["extract"]},
            {"name": "extract", "job_id": jobs["extract"]},
        ],
    )
    schedule = create_schedule(
        pipeline, None, flow_id=flow_id, kind="cron", cron_expression="*/2 * * * * *", parameters={"k": 1}
    )
    assert (schedule["job_id"], schedule["flow_id"]) == (None, flow_id)
    first = first_second_after(at(schedule["created_at"]))
    wait_until(first + timedelta(seconds=4))

    def two_runs_done() -> list[dict[str, Any]] | None:
        runs = pipeline.call("GET", f"/flows/{flow_id}/runs")["items"]
        done = [run for run in runs if run["status"] in FINAL_RUN]
        return runs if len(done) >= 2 else None

    runs = wait_for(two_runs_done, what="two scheduled runs to end")
    disable(pipeline, schedule["id"])
    records = api_slot_records(pipeline, schedule["id"])
    slots = []
    for run in runs[:2]:
        assert run["status"] == "succeeded", run
        assert run["schedule_id"] == schedule["id"]
        assert run["parameters"] == {"k": 1}
        slot = at(run["scheduled_at"])
        slots.append(slot)
        assert (records[slot]["outcome"], records[slot]["flow_run_id"]) == ("ran", run["id"])
        steps = _by_step(run)
        assert list(steps) == ["extract", "load"]
        assert all(step["status"] == "succeeded" for step in steps.values())
        extract = _span(tmp_path, "extract", steps["extract"]["task_id"])
        load = _span(tmp_path, "load", steps["load"]["task_id"])
        assert extract[1] <= load[0]
        # The run's tasks are listed by its id.
        tasks = pipeline.call("GET", "/tasks", params={"flow_run_id": run["id"]})["items"]
        assert {task["id"] for task in tasks} == {step["task_id"] for step in steps.values()}
        assert {task["flow_step"] for task in tasks} == {"extract", "load"}
    assert slots[1] - slots[0] >= timedelta(seconds=2)
    assert all(slot.second % 2 == 0 for slot in slots)


def test_cancelling_a_running_run_kills_its_step_and_skips_the_rest(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start(capacity=2)
    pid_file = tmp_path / "pid"
    slow = pipeline.create_job(suite=agents.suite, script=f"echo $$ > {pid_file}; exec sleep 60")
    after = pipeline.create_job(suite=agents.suite, script="true")
    flow_id = _flow(
        pipeline,
        [
            {"name": "slow", "job_id": slow},
            {"name": "after", "job_id": after, "depends_on": ["slow"]},
            {"name": "cleanup", "job_id": after, "depends_on": ["slow"], "trigger_rule": "all_done"},
        ],
    )
    run = pipeline.call("POST", f"/flows/{flow_id}/run", expect=201)
    path = f"/flows/{flow_id}/runs/{run['id']}"

    def slow_running() -> bool:
        return _by_step(pipeline.call("GET", path))["slow"]["status"] == "running" and pid_file.exists()

    wait_for(slow_running, what="the slow step to run")
    pid = int(wait_for(lambda: pid_file.read_text().strip(), what="the step's pid"))
    cancelled = pipeline.call("POST", f"{path}/cancel")
    assert cancelled["status"] == "cancelled"
    steps = _by_step(cancelled)
    assert steps["slow"]["status"] == "cancelled"
    # Pending steps are skipped, whatever their trigger rule: the run is over.
    assert (steps["after"]["status"], steps["cleanup"]["status"]) == ("skipped", "skipped")
    slow_task = steps["slow"]["task_id"]
    wait_for(
        lambda: pipeline.instances(slow_task)[0]["status"] == "cancelled",
        what="the agent to stop the slow step",
    )
    wait_for(lambda: not _alive(pid), what=f"process {pid} to be gone")
    assert pipeline.call("GET", path)["status"] == "cancelled"
    assert pipeline.instances(steps["after"]["task_id"]) == []
    again = pipeline.client.post(f"/api/v1{path}/cancel")
    assert again.status_code == 409, again.text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): only a process that runs counts.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_all_done_cleanup_and_one_failed_alert_run_after_a_failure(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start(capacity=4)
    switch = tmp_path / "fail"
    names = ("report", "cleanup", "alert")
    jobs = {name: _step_job(pipeline, agents.suite, tmp_path, name) for name in names}
    jobs["work"] = _step_job(pipeline, agents.suite, tmp_path, "work", tail=_FAIL_IF.format(switch))
    after_work = {"depends_on": ["work"]}
    flow_id = _flow(
        pipeline,
        [
            {"name": "work", "job_id": jobs["work"]},
            {"name": "report", "job_id": jobs["report"], **after_work},
            {"name": "cleanup", "job_id": jobs["cleanup"], **after_work, "trigger_rule": "all_done"},
            {"name": "alert", "job_id": jobs["alert"], **after_work, "trigger_rule": "one_failed"},
        ],
    )
    switch.touch()
    failed = _wait_run(pipeline, flow_id, pipeline.call("POST", f"/flows/{flow_id}/run", expect=201)["id"])
    assert failed["status"] == "failed"
    steps = _by_step(failed)
    assert {name: step["status"] for name, step in steps.items()} == {
        "work": "failed",
        "report": "skipped",
        "cleanup": "succeeded",
        "alert": "succeeded",
    }
    work_span = _span(tmp_path, "work", steps["work"]["task_id"])
    for name in ("cleanup", "alert"):
        assert work_span[1] <= _span(tmp_path, name, steps[name]["task_id"])[0]

    switch.unlink()
    ok = _wait_run(pipeline, flow_id, pipeline.call("POST", f"/flows/{flow_id}/run", expect=201)["id"])
    assert ok["status"] == "succeeded"
    steps = _by_step(ok)
    assert {name: step["status"] for name, step in steps.items()} == {
        "work": "succeeded",
        "report": "succeeded",
        "cleanup": "succeeded",
        "alert": "skipped",
    }
    assert steps["alert"]["error"] == "no step it depends on failed"


def test_a_failed_run_is_retried_from_the_failed_step_keeping_what_succeeded(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start(capacity=4)
    switch = tmp_path / "fail"
    switch.touch()
    jobs = {
        "first": _step_job(pipeline, agents.suite, tmp_path, "first"),
        "flaky": _step_job(pipeline, agents.suite, tmp_path, "flaky", tail=_FAIL_IF.format(switch)),
        "last": _step_job(pipeline, agents.suite, tmp_path, "last"),
        "side": _step_job(pipeline, agents.suite, tmp_path, "side"),
    }
    flow_id = _flow(
        pipeline,
        [
            {"name": "first", "job_id": jobs["first"]},
            {"name": "flaky", "job_id": jobs["flaky"], "depends_on": ["first"], "timeout_secs": 30},
            {"name": "last", "job_id": jobs["last"], "depends_on": ["flaky"]},
            {"name": "side", "job_id": jobs["side"], "depends_on": ["first"]},
        ],
    )
    run = pipeline.call("POST", f"/flows/{flow_id}/run", expect=201)
    failed = _wait_run(pipeline, flow_id, run["id"])
    assert failed["status"] == "failed"
    before = _by_step(failed)
    assert (before["flaky"]["status"], before["last"]["status"]) == ("failed", "skipped")
    assert pipeline.task(before["flaky"]["task_id"])["config"]["timeout_secs"] == 30

    switch.unlink()
    path = f"/flows/{flow_id}/runs/{run['id']}"
    retried = pipeline.call("POST", f"{path}/retry")
    assert retried["status"] == "running"
    done = _wait_run(pipeline, flow_id, run["id"])
    assert done["status"] == "succeeded"
    after = _by_step(done)
    assert all(step["status"] == "succeeded" for step in after.values())
    # The steps that succeeded are kept; the failed one and the one after it ran again.
    for name in ("first", "side"):
        assert after[name]["task_id"] == before[name]["task_id"]
        assert len(list(tmp_path.glob(f"{name}.*"))) == 1
    for name in ("flaky", "last"):
        assert after[name]["task_id"] != before[name]["task_id"]
    new_flaky = pipeline.task(after["flaky"]["task_id"])
    assert new_flaky["flow_run_id"] == run["id"]
    assert new_flaky["config"]["timeout_secs"] == 30
    assert (
        _span(tmp_path, "flaky", after["flaky"]["task_id"])[1]
        <= _span(tmp_path, "last", after["last"]["task_id"])[0]
    )
    # Every task the run ever had is still listed under it: the old attempt is history.
    tasks = pipeline.call("GET", "/tasks", params={"flow_run_id": run["id"]})["items"]
    assert len(tasks) == 6
    again = pipeline.client.post(f"/api/v1{path}/retry")
    assert again.status_code == 409, again.text
