"""A job triggered through the API runs on a real agent: results, logs, metrics, retries, limits, commands.

One real server process and real agent processes on a real PostgreSQL (``pipelinefixtures``).
"""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import datetime
from typing import Any

import httpx
import psutil
import pytest
from pipelinefixtures import AgentPool, Pipeline, wait_for


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _only_instance(pipeline: Pipeline, task_id: str) -> dict[str, Any]:
    (instance,) = pipeline.instances(task_id)
    return instance


def _output(pipeline: Pipeline, instance_id: str, stream: str = "stdout") -> str:
    return "".join(chunk["content"] for chunk in pipeline.logs(instance_id) if chunk["stream"] == stream)


def test_triggered_job_runs_and_reports_output_logs_and_metrics(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agent = agents.start()
    script = (
        'echo "task=$HETUFLOW_TASK_ID attempt=$HETUFLOW_ATTEMPT params=$HETUFLOW_PARAMS"\necho oops >&2\n'
    )
    task_id = pipeline.trigger(
        pipeline.create_job(suite=agents.suite, script=script), parameters={"who": "world"}
    )

    task = pipeline.wait_task(task_id)
    assert task["status"] == "succeeded"
    assert task["agent_id"] == agent.agent_id
    instance = _only_instance(pipeline, task_id)
    assert instance["status"] == "succeeded"
    assert instance["exit_code"] == 0
    assert f"task={task_id} attempt=1" in instance["output"]
    assert json.loads(instance["output"].split("params=")[1].splitlines()[0]) == {"who": "world"}
    assert instance["metrics"]["duration_secs"] > 0
    assert instance["metrics"]["peak_rss_bytes"] > 0
    assert _at(instance["dispatched_at"]) <= _at(instance["started_at"]) <= _at(instance["completed_at"])
    assert f"task={task_id}" in _output(pipeline, instance["id"])
    assert _output(pipeline, instance["id"], "stderr") == "oops\n"


def test_non_zero_exit_fails_and_is_retried_with_growing_delays(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agents.start()
    retry = {"max_retries": 2, "backoff": "exponential", "base_secs": 0.4, "jitter": 0.0}
    task_id = pipeline.run(suite=agents.suite, script="exit 3", retry=retry)

    task = pipeline.wait_task(task_id)
    assert task["status"] == "failed"
    assert task["attempt"] == 3
    instances = pipeline.instances(task_id)
    assert [i["status"] for i in instances] == ["failed"] * 3
    assert [i["exit_code"] for i in instances] == [3, 3, 3]
    gaps = [
        (_at(later["started_at"]) - _at(earlier["completed_at"])).total_seconds()
        for earlier, later in itertools.pairwise(instances)
    ]
    assert gaps[0] >= 0.4
    assert gaps[1] >= 0.8
    assert gaps[1] > gaps[0]


def test_timeout_kills_the_whole_process_group(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start()
    # The child ignores SIGTERM (the ignore survives exec): only the SIGKILL after the grace period ends it.
    script = "(trap '' TERM; exec sleep 60) &\necho \"child $!\"\nsleep 60\n"
    task_id = pipeline.run(suite=agents.suite, script=script, timeout_secs=1)

    task = pipeline.wait_task(task_id)
    instance = _only_instance(pipeline, task_id)
    assert instance["status"] == "timeout", instance
    assert task["status"] == "failed"
    child_pid = int(instance["output"].split("child ")[1].split()[0])
    wait_for(lambda: _gone(child_pid), timeout=10, what=f"child {child_pid} to be killed")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_memory_hog_is_killed_by_the_limit(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start()
    script = (
        "import time\nhog = []\n"
        "for _ in range(100):\n    hog.append(bytearray(8 * 1024 * 1024))\n    time.sleep(0.02)\n"
        "time.sleep(30)\n"
    )
    task_id = pipeline.run(suite=agents.suite, command="python", script=script, limits={"memory_mb": 64})

    pipeline.wait_task(task_id)
    instance = _only_instance(pipeline, task_id)
    assert instance["status"] == "failed"
    assert "memory limit exceeded" in instance["error"]
    assert instance["metrics"]["peak_rss_bytes"] > 64 * 1024 * 1024


def test_output_beyond_the_cap_is_truncated_and_the_process_unharmed(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agents.start()
    script = 'for i in $(seq 1 5000); do echo "line $i of the output that goes on"; done\necho done-ok\n'
    task_id = pipeline.run(suite=agents.suite, script=script, limits={"max_output_bytes": 1000})

    task = pipeline.wait_task(task_id)
    instance = _only_instance(pipeline, task_id)
    assert task["status"] == "succeeded"
    assert instance["exit_code"] == 0
    assert instance["output_truncated"] is True
    assert len(instance["output"].encode()) < 2000


def test_python_and_uv_commands_run(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start()
    script = (
        "import json, os, sys\n"
        "print('py', sys.version_info[0], json.loads(os.environ['HETUFLOW_PARAMS'])['n'])\n"
    )
    python_task = pipeline.trigger(
        pipeline.create_job(suite=agents.suite, command="python", script=script), parameters={"n": 7}
    )
    uv_task = pipeline.run(  # ``uv run python -c …``: uv resolves an interpreter offline and runs it
        suite=agents.suite,
        command="uv",
        args=["python", "-c", "print('from uv')"],
        env={"UV_OFFLINE": "1", "UV_NO_PROGRESS": "1"},
    )
    uv_script_task = pipeline.run(  # a script body: the agent writes script.py and runs ``uv run script.py``
        suite=agents.suite,
        command="uv",
        script="print('uv script', 6 * 7)\n",
        env={"UV_OFFLINE": "1", "UV_NO_PROGRESS": "1"},
    )

    for task_id, expected in (
        (python_task, "py 3 7"),
        (uv_task, "from uv"),
        (uv_script_task, "uv script 42"),
    ):
        task = pipeline.wait_task(task_id, timeout=60)
        instance = _only_instance(pipeline, task_id)
        assert task["status"] == "succeeded", instance
        assert expected in instance["output"]


OPTIONAL: dict[str, tuple[dict[str, Any], str]] = {
    "node": ({"command": "node", "script": "console.log('node ' + (1 + 1))"}, "node 2"),
    "npx": ({"command": "npx", "args": ["--version"]}, "."),
    "cargo": ({"command": "cargo", "args": ["--version"]}, "cargo "),
    # A script body is launched as single-file source (Main.java).
    "java": (
        {
            "command": "java",
            "script": "class Main { public static void main(String[] a) {\n"
            '    System.out.println("java " + 42);\n'
            "} }\n",
        },
        "java 42",
    ),
}


@pytest.mark.parametrize("kind", sorted(OPTIONAL))
def test_optional_commands_run_where_installed(pipeline: Pipeline, agents: AgentPool, kind: str) -> None:
    if shutil.which(kind) is None:
        pytest.skip(f"{kind} is not installed on this machine")
    agents.start()
    config, expected = OPTIONAL[kind]
    task_id = pipeline.run(suite=agents.suite, **config)

    task = pipeline.wait_task(task_id, timeout=60)
    instance = _only_instance(pipeline, task_id)
    assert task["status"] == "succeeded", instance
    assert expected in instance["output"]


def test_live_tail_streams_logs_until_the_attempt_ends(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start()
    script = 'for i in 1 2 3 4 5; do echo "tick $i"; sleep 0.3; done\n'
    task_id = pipeline.run(suite=agents.suite, script=script)
    instance_id = pipeline.wait_task(task_id, "running", *sorted(("succeeded", "failed")))["instance_id"]

    events: list[tuple[str, str]] = []
    url = f"{pipeline.server.url}/api/v1/instances/{instance_id}/logs/stream"
    with httpx.stream("GET", url, headers=pipeline.client.headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((event, line.removeprefix("data: ")))
    assert events[-1][0] == "end"
    assert json.loads(events[-1][1])["status"] == "succeeded"
    text = "".join(json.loads(data)["content"] for name, data in events if name == "log")
    assert text == "".join(f"tick {i}\n" for i in range(1, 6))


def test_live_tail_needs_a_read_token_and_a_known_attempt(pipeline: Pipeline) -> None:
    url = f"{pipeline.server.url}/api/v1/instances/01900000-0000-7000-8000-000000000000/logs/stream"
    assert httpx.get(url).status_code == 401
    response = httpx.get(url, headers=pipeline.client.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_shutdown_through_the_api_drains_the_agent_and_its_process_exits_0(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    agent = agents.start(capacity=1)
    task_id = pipeline.run(suite=agents.suite, script="echo started\nsleep 1\necho finished\n")
    pipeline.wait_task(task_id, "running")
    answer = pipeline.call("POST", f"/agents/{agent.agent_id}/shutdown")
    assert answer["status"] == "draining"
    later = pipeline.run(suite=agents.suite, script="echo too late\n")
    assert agent.process.wait(timeout=30) == 0, agent.log()
    # The running task finished during the drain; nothing new was taken meanwhile.
    assert pipeline.wait_task(task_id)["status"] == "succeeded"
    assert "finished" in pipeline.instances(task_id)[-1]["output"]
    assert pipeline.task(later)["status"] == "pending"
    assert pipeline.instances(later) == []
    gone = wait_for(
        lambda: (a := pipeline.call("GET", f"/agents/{agent.agent_id}"))["status"] == "offline" and a,
        what="the agent offline",
    )
    assert gone["server_id"] is None
    pipeline.call("POST", f"/tasks/{later}/cancel")
