"""REST API of events and flows against a real server and database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from apihelpers import assert_problem

FLOWS = "/api/v1/flows"


def new_job(client: httpx.Client, name: str) -> str:
    response = client.post(
        "/api/v1/jobs", json={"name": name, "config": {"command": "bash", "script": "true"}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def job_ids(admin_client: httpx.Client) -> list[str]:
    return [new_job(admin_client, f"step-job-{index}") for index in range(2)]


def test_event_starts_every_listening_job(admin_client: httpx.Client) -> None:
    listeners = [new_job(admin_client, f"listener-{index}") for index in range(2)]
    for job_id in listeners:
        schedule = {
            "job_id": job_id,
            "kind": "event",
            "event_name": "deployed",
            "parameters": {"env": "prod"},
        }
        assert admin_client.post("/api/v1/schedules", json=schedule).status_code == 201
    response = admin_client.post("/api/v1/events/deployed", json={"sha": "abc123"})
    assert response.status_code == 201, response.text
    task_ids = response.json()["task_ids"]
    assert len(task_ids) == 2
    tasks = [admin_client.get(f"/api/v1/tasks/{task_id}").json() for task_id in task_ids]
    assert {task["job_id"] for task in tasks} == set(listeners)
    assert all(task["parameters"] == {"env": "prod", "sha": "abc123"} for task in tasks)
    nobody = admin_client.post("/api/v1/events/nobody-listens", json={})
    assert nobody.status_code == 201
    assert nobody.json() == {"task_ids": []}


def test_bad_events(admin_client: httpx.Client) -> None:
    problem = assert_problem(admin_client.post("/api/v1/events/x", json=[1, 2]), 422, "invalid-input")
    assert problem["errors"][0]["path"] == "$"
    assert_problem(admin_client.post("/api/v1/events/x"), 415, "unsupported-media-type")
    empty = admin_client.post("/api/v1/events/x", headers={"content-type": "application/json"})
    assert_problem(empty, 400, "malformed-body")
    assert_problem(admin_client.post("/api/v1/events/x", content=b"{}"), 415, "unsupported-media-type")
    assert_problem(admin_client.post("/api/v1/events/bad%20name", json={}), 404, "not-found")
    assert_problem(admin_client.post("/api/v1/events/x", json={"k": "\u0000"}), 422, "invalid-input")


def flow_body(name: str, job_ids: list[str], **fields: Any) -> dict[str, Any]:
    steps = [
        {"name": "build", "job_id": job_ids[0]},
        {"name": "ship", "job_id": job_ids[1], "depends_on": ["build"], "parameters": {"target": "prod"}},
    ]
    return {"name": name, "steps": steps, **fields}


def test_create_get_list_run_flow(
    admin_client: httpx.Client, read_client: httpx.Client, job_ids: list[str]
) -> None:
    response = admin_client.post(FLOWS, json=flow_body("release", job_ids, description="build then ship"))
    assert response.status_code == 201, response.text
    flow = response.json()
    assert response.headers["location"] == f"{FLOWS}/{flow['id']}"
    assert [step["name"] for step in flow["steps"]] == ["build", "ship"]
    assert read_client.get(f"{FLOWS}/{flow['id']}").json() == flow
    assert flow["id"] in [item["id"] for item in read_client.get(FLOWS).json()["items"]]
    assert_problem(admin_client.post(FLOWS, json=flow_body("release", job_ids)), 409, "conflict")

    run = admin_client.post(f"{FLOWS}/{flow['id']}/run", json={"parameters": {"version": "1.2"}})
    assert run.status_code == 201, run.text
    flow_run = run.json()
    assert (flow_run["flow_id"], flow_run["parameters"]) == (flow["id"], {"version": "1.2"})
    assert run.headers["location"] == f"{FLOWS}/{flow['id']}/runs/{flow_run['id']}"
    assert read_client.get(run.headers["location"]).json() == flow_run
    bare = admin_client.post(f"{FLOWS}/{flow['id']}/run")
    assert bare.status_code == 201, bare.text
    runs = read_client.get(f"{FLOWS}/{flow['id']}/runs").json()
    assert [item["id"] for item in runs["items"]] == [flow_run["id"], bare.json()["id"]]
    tasks = read_client.get("/api/v1/tasks", params={"job_id": job_ids[1]}).json()["items"]
    assert any(task["parameters"] == {"target": "prod", "version": "1.2"} for task in tasks)


@pytest.mark.parametrize(
    ("steps", "path_fragment"),
    [
        ([], "$.steps"),
        ([{"name": "a", "job_id": "JOB", "depends_on": ["a"]}], "$.steps"),
        ([{"name": "a", "job_id": "JOB", "depends_on": ["nope"]}], "$.steps"),
        ([{"name": "a", "job_id": "JOB"}, {"name": "a", "job_id": "JOB"}], "$.steps"),
        ([{"name": "a", "job_id": str(uuid.UUID(int=1))}], "$.steps[0].job_id"),
        ([{"name": "a", "job_id": "not-a-uuid"}], "$.steps[0].job_id"),
    ],
)
def test_invalid_flows_are_422(
    admin_client: httpx.Client, job_ids: list[str], steps: list[dict[str, Any]], path_fragment: str
) -> None:
    for step in steps:
        if step["job_id"] == "JOB":
            step["job_id"] = job_ids[0]
    problem = assert_problem(
        admin_client.post(FLOWS, json={"name": "bad", "steps": steps}), 422, "invalid-input"
    )
    assert any(error["path"].startswith(path_fragment) for error in problem["errors"]), problem


def test_unknown_flows_are_404(admin_client: httpx.Client, job_ids: list[str]) -> None:
    missing = f"{FLOWS}/{uuid.uuid4()}"
    assert_problem(admin_client.get(missing), 404, "not-found")
    assert_problem(admin_client.post(f"{missing}/run"), 404, "not-found")
    assert_problem(admin_client.get(f"{missing}/runs"), 404, "not-found")
    assert_problem(admin_client.get(f"{missing}/runs/{uuid.uuid4()}"), 404, "not-found")
    flow = admin_client.post(FLOWS, json=flow_body("other", job_ids)).json()
    run = admin_client.post(f"{FLOWS}/{flow['id']}/run").json()
    # A run exists only under its own flow.
    assert_problem(admin_client.get(f"{missing}/runs/{run['id']}"), 404, "not-found")
    assert_problem(admin_client.post(f"{FLOWS}/{flow['id']}/run", json={"params": {}}), 422, "invalid-input")
