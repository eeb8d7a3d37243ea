"""Cancel, crashes and restarts with real server and agent processes: nothing is lost, nothing runs twice."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest
from pipelinefixtures import AGENT_TIMEOUT_SECS, AgentPool, Pipeline, wait_for

RETRY = {"max_retries": 2, "backoff": "fixed", "base_secs": 0.2, "jitter": 0.0}


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _wait_pid(pipeline: Pipeline, task_id: str) -> tuple[dict[str, Any], int]:
    """Wait until the task runs and its process printed ``pid <n>``; its current instance and that pid."""

    def started() -> tuple[dict[str, Any], int] | None:
        task = pipeline.task(task_id)
        if task["status"] != "running":
            return None
        text = "".join(chunk["content"] for chunk in pipeline.logs(task["instance_id"]))
        if "pid " not in text:
            return None
        return task, int(text.split("pid ")[1].split()[0])

    return wait_for(started, what=f"task {task_id} to print its pid")


def _cancel_and_check(pipeline: Pipeline, task_id: str) -> None:
    task, pid = _wait_pid(pipeline, task_id)
    cancelled = pipeline.call("POST", f"/tasks/{task_id}/cancel")
    assert cancelled["status"] == "cancelled"

    def instance_ended() -> dict[str, Any] | None:
        instance = pipeline.call("GET", f"/instances/{task['instance_id']}")
        return instance if instance["status"] != "running" else None

    instance = wait_for(instance_ended, what="the agent to report the cancelled attempt")
    assert instance["status"] == "cancelled"
    wait_for(lambda: _gone(pid), timeout=10, what=f"process {pid} to be killed")
    assert pipeline.task(task_id)["status"] == "cancelled"


def test_cancel_reaches_the_running_process(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start()
    task_id = pipeline.run(suite=agents.suite, script='echo "pid $$"\nsleep 60\n')
    _cancel_and_check(pipeline, task_id)


def test_cancel_travels_through_notify_to_the_server_holding_the_agent(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    other = pipeline.start_server("second")
    agents.start(servers=[other])
    task_id = pipeline.run(suite=agents.suite, script='echo "pid $$"\nsleep 60\n')
    # The API call goes to the first server; the agent is connected to the second.
    _cancel_and_check(pipeline, task_id)


def test_kill_9_of_an_agent_mid_task_retries_it_on_another_agent(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    doomed = agents.start(capacity=1)
    # The first attempt outlives the time the survivor takes to start on a busy machine (its orphaned group is
    # killed below); the retry is short.
    script = 'echo "pid $$"\nif [ "$HETUFLOW_ATTEMPT" = 1 ]; then sleep 60; else sleep 1; fi\necho done\n'
    task_id = pipeline.run(suite=agents.suite, script=script, retry=RETRY)
    _, pid = _wait_pid(pipeline, task_id)
    survivor = agents.start(capacity=1)
    doomed.kill()
    try:
        task = pipeline.wait_task(task_id, timeout=AGENT_TIMEOUT_SECS + 20)
    finally:
        _kill_group(pid)
    assert task["status"] == "succeeded"
    first, second = pipeline.instances(task_id)
    assert (first["agent_id"], first["status"]) == (doomed.agent_id, "lost")
    assert (second["agent_id"], second["status"]) == (survivor.agent_id, "succeeded")
    assert "done" in second["output"]


def test_restart_of_an_agent_with_the_same_id_reconciles_and_nothing_runs_twice(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    agent = agents.start(capacity=1)
    # The first attempt outlives the restart however slow the machine (the successor kills it); the retry
    # is short.
    script = (
        f'echo "pid $$"\necho "start $HETUFLOW_ATTEMPT" >> {ledger}\n'
        'if [ "$HETUFLOW_ATTEMPT" = 1 ]; then sleep 60; else sleep 1.5; fi\n'
        f'echo "end $HETUFLOW_ATTEMPT" >> {ledger}\n'
    )
    task_id = pipeline.run(suite=agents.suite, script=script, retry=RETRY)
    _, pid = _wait_pid(pipeline, task_id)

    agent.kill()  # its task keeps running, orphaned ...
    assert not _gone(pid)
    restarted = agents.launch(agent.agent_id, agent.args, agent.workdir)  # ... until the successor reaps it

    task = pipeline.wait_task(task_id)
    assert task["status"] == "succeeded"
    assert _gone(pid)
    first, second = pipeline.instances(task_id)
    assert first["status"] == "lost"  # declared lost by the state sync at registration, not by a timeout
    assert second["status"] == "succeeded"
    assert {first["agent_id"], second["agent_id"]} == {restarted.agent_id}
    assert ledger.read_text().splitlines() == ["start 1", "start 2", "end 2"]


@pytest.mark.parametrize("scope", ["read", "admin"])
def test_only_admins_cancel(pipeline: Pipeline, scope: str) -> None:
    body = {"name": f"cancel-{scope}", "scope": scope}
    token = pipeline.call("POST", "/tokens", json=body, expect=201)["token"]
    job_id = pipeline.create_job(suite="nobody-runs-this", script="true")
    task_id = pipeline.trigger(job_id)
    response = pipeline.client.post(
        f"/api/v1/tasks/{task_id}/cancel", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == (200 if scope == "admin" else 403)
