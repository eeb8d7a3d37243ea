"""A real agent through a restart of its server while it runs a task: the attempt is kept by the state sync
the agent sends when it registers again, and runs once.

The agent timeout of this module (``AGENT_TIMEOUT_SECS``) outlasts any restart, so the leader never sees the
agent silent: on a loaded machine a server process can take longer to start than the suite's 3 s timeout,
and an agent reaped meanwhile has its attempt declared lost and retried, which is another test's subject.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipelinefixtures import AgentPool, Pipeline, wait_for
from serverfixtures import free_port

AGENT_TIMEOUT_SECS = 120
RETRY = {"max_retries": 2, "backoff": "fixed", "base_secs": 0.2, "jitter": 0.0}
"""Retries allowed, so that a run the server wrongly gave up on would show as a second attempt."""


@pytest.fixture(scope="module")
def pipeline_env() -> dict[str, str]:
    return {"HETUFLOW_SCHEDULER__AGENT_TIMEOUT_SECS": str(AGENT_TIMEOUT_SECS)}


def test_a_running_task_survives_a_reconnect_and_is_kept_by_the_state_sync(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    port = free_port()
    server = pipeline.start_server("restarting", port=port)
    agent = agents.start(servers=[server], capacity=1)
    ledger = tmp_path / "ledger"
    script = f"echo start >> {ledger}\nsleep 2\necho end >> {ledger}\n"
    task_id = pipeline.run(suite=agents.suite, script=script, retry=RETRY)
    wait_for(
        lambda: ledger.exists() and pipeline.task(task_id)["status"] == "running",
        what=f"task {task_id} to run",
    )

    assert server.terminate() == 0  # the agent loses its connection while the task runs
    pipeline.servers.remove(server)
    pipeline.start_server("restarting", port=port)
    agent.wait_registered(2)

    task = pipeline.wait_task(task_id)
    assert task["status"] == "succeeded"
    (instance,) = pipeline.instances(task_id)  # kept at registration: one attempt, run once
    assert instance["status"] == "succeeded"
    assert ledger.read_text().splitlines() == ["start", "end"]
