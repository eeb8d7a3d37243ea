"""Secret env entries of a job, end to end: a real server, a real agent and PostgreSQL.

The value reaches the task's process, and nothing else shows it: every API answer carrying the config (job
and task, one by one and in pages, for admin and read tokens) masks it, and neither the server's nor the
agent's log holds it. A config read and sent back keeps the stored value.
"""

from __future__ import annotations

from typing import Any

import httpx
from pipelinefixtures import AgentPool, Pipeline

SECRET = "s3cret-value-81f2"


def _read_client(pipeline: Pipeline) -> httpx.Client:
    body = {"name": "secret-reader", "scope": "read"}
    token = pipeline.call("POST", "/tokens", json=body, expect=201)["token"]
    return httpx.Client(
        base_url=pipeline.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


def test_a_secret_env_value_reaches_the_task_and_no_reader(pipeline: Pipeline, agents: AgentPool) -> None:
    agent = agents.start()
    config: dict[str, Any] = {
        "command": "bash",
        # The script must not hold the secret itself: it checks the value reversed.
        "script": (
            f'[ "$(printf %s "$API_TOKEN" | rev)" = {SECRET[::-1]} ] && echo "token ok, region $REGION"'
        ),
        "env": {"API_TOKEN": SECRET, "REGION": "eu"},
        "secret_env": ["API_TOKEN"],
        "target": {"labels": {"suite": agents.suite}},
    }
    created = pipeline.call(
        "POST", "/jobs", json={"name": f"{agents.suite}-secret", "config": config}, expect=201
    )
    job_id = created["id"]
    task_id = pipeline.trigger(job_id)
    task = pipeline.wait_task(task_id)
    assert task["status"] == "succeeded"
    assert [entry["content"] for entry in pipeline.logs(task["instance_id"])] == ["token ok, region eu\n"]

    with _read_client(pipeline) as reader:
        answers = [
            created,
            pipeline.call("GET", f"/jobs/{job_id}"),
            pipeline.call("GET", "/jobs", params={"limit": 500}),
            pipeline.call("GET", f"/tasks/{task_id}"),
            pipeline.call("GET", "/tasks", params={"job_id": job_id}),
            reader.get(f"/api/v1/jobs/{job_id}").json(),
            reader.get(f"/api/v1/tasks/{task_id}").json(),
            reader.get("/api/v1/tasks", params={"job_id": job_id}).json(),
        ]
    for answer in answers:
        assert SECRET not in str(answer)
    job = pipeline.call("GET", f"/jobs/{job_id}")
    assert job["config"]["env"] == {"API_TOKEN": "***", "REGION": "eu"}
    assert job["config"]["secret_env"] == ["API_TOKEN"]

    # The config as read, sent back with another change: the stored secret stays.
    edited = {**job["config"], "env": {**job["config"]["env"], "REGION": "us"}}
    updated = pipeline.call("PATCH", f"/jobs/{job_id}", json={"config": edited})
    assert updated["config"]["env"] == {"API_TOKEN": "***", "REGION": "us"}
    again = pipeline.wait_task(pipeline.trigger(job_id))
    assert again["status"] == "succeeded"
    assert [entry["content"] for entry in pipeline.logs(again["instance_id"])] == ["token ok, region us\n"]

    assert SECRET not in pipeline.server.log()
    assert SECRET not in agent.log()


def test_a_secret_name_must_be_an_env_key(pipeline: Pipeline, agents: AgentPool) -> None:
    config = {"command": "bash", "script": "true", "env": {"A": "1"}, "secret_env": ["A", "B"]}
    response = pipeline.client.post("/api/v1/jobs", json={"name": f"{agents.suite}-bad", "config": config})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "$.config.secret_env[1]"
