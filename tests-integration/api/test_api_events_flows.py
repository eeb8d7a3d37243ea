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


def _steps(job_ids: list[str], **last: Any) -> list[dict[str, Any]]:
    return [
        {"name": "build", "job_id": job_ids[0]},
        {"name": "ship", "job_id": job_ids[1], "depends_on": ["build"], **last},
    ]


def test_change_enable_disable_flow(admin_client: httpx.Client, job_ids: list[str]) -> None:
    flow = admin_client.post(FLOWS, json=flow_body("changing", job_ids)).json()
    path = f"{FLOWS}/{flow['id']}"
    before = admin_client.post(f"{path}/run").json()
    steps = _steps(job_ids, trigger_rule="all_done", timeout_secs=5)
    changed = admin_client.patch(path, json={"description": "v2", "steps": steps, "concurrency": "forbid"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["description"], body["concurrency"], body["name"]) == ("v2", "forbid", "changing")
    assert body["steps"][1]["trigger_rule"] == "all_done"
    assert body["steps"][1]["timeout_secs"] == 5
    # A run started before keeps the steps it started with; a new one gets the new ones.
    old_ship = admin_client.get(f"/api/v1/tasks/{before['steps'][1]['task_id']}").json()
    assert old_ship["config"]["timeout_secs"] is None
    after = admin_client.post(f"{path}/run").json()
    new_ship = admin_client.get(f"/api/v1/tasks/{after['steps'][1]['task_id']}").json()
    assert new_ship["config"]["timeout_secs"] == 5

    disabled = admin_client.post(f"{path}/disable")
    assert (disabled.status_code, disabled.json()["status"]) == (200, "disabled")
    assert_problem(admin_client.post(f"{path}/run"), 409, "conflict")
    assert admin_client.post(f"{path}/enable").json()["status"] == "enabled"
    assert admin_client.post(f"{path}/run").status_code == 201


@pytest.mark.parametrize(
    ("patch", "path_fragment"),
    [
        ({"steps": [{"name": "a", "job_id": "JOB", "depends_on": ["a"]}]}, "$.steps[0].depends_on"),
        ({"steps": [{"name": "a", "job_id": str(uuid.UUID(int=1))}]}, "$.steps[0].job_id"),
        ({"steps": [{"name": "a", "job_id": "JOB", "trigger_rule": "all_done"}]}, "$.steps[0].trigger_rule"),
        ({"steps": [{"name": "a", "job_id": "JOB", "trigger_rule": "sometimes"}]}, "$.steps[0].trigger_rule"),
        ({"steps": [{"name": "a", "job_id": "JOB", "timeout_secs": 0}]}, "$.steps[0].timeout_secs"),
        ({"steps": []}, "$.steps"),
        ({"concurrency": "later"}, "$.concurrency"),
        ({"owner": "me"}, "$"),
    ],
)
def test_invalid_flow_changes_are_422(
    admin_client: httpx.Client, job_ids: list[str], patch: dict[str, Any], path_fragment: str
) -> None:
    flow = admin_client.post(FLOWS, json=flow_body(f"patched-{uuid.uuid4().hex[:8]}", job_ids)).json()
    for step in patch.get("steps", []):
        if step["job_id"] == "JOB":
            step["job_id"] = job_ids[0]
    problem = assert_problem(admin_client.patch(f"{FLOWS}/{flow['id']}", json=patch), 422, "invalid-input")
    assert any(error["path"].startswith(path_fragment) for error in problem["errors"]), problem
    assert admin_client.get(f"{FLOWS}/{flow['id']}").json() == flow


def test_flow_names_conflict_on_change_and_free_up_on_delete(
    admin_client: httpx.Client, job_ids: list[str]
) -> None:
    first = admin_client.post(FLOWS, json=flow_body("taken", job_ids)).json()
    second = admin_client.post(FLOWS, json=flow_body("other-name", job_ids)).json()
    assert_problem(admin_client.patch(f"{FLOWS}/{second['id']}", json={"name": "taken"}), 409, "conflict")
    run = admin_client.post(f"{FLOWS}/{first['id']}/run").json()
    schedule = admin_client.post(
        "/api/v1/schedules", json={"flow_id": first["id"], "kind": "interval", "interval_secs": 3600}
    ).json()
    assert admin_client.delete(f"{FLOWS}/{first['id']}").status_code == 204
    assert_problem(admin_client.get(f"{FLOWS}/{first['id']}"), 404, "not-found")
    assert_problem(admin_client.delete(f"{FLOWS}/{first['id']}"), 404, "not-found")
    assert_problem(admin_client.patch(f"{FLOWS}/{first['id']}", json={}), 404, "not-found")
    assert first["id"] not in [item["id"] for item in admin_client.get(FLOWS).json()["items"]]
    # Its live run was cancelled, its schedule disabled, and its name is free again.
    ended = admin_client.get(f"/api/v1/tasks/{run['steps'][0]['task_id']}").json()
    assert ended["status"] == "skipped"
    assert admin_client.get(f"/api/v1/schedules/{schedule['id']}").json()["status"] == "disabled"
    assert admin_client.post(FLOWS, json=flow_body("taken", job_ids)).status_code == 201


def test_cancel_and_retry_a_run(
    admin_client: httpx.Client, read_client: httpx.Client, job_ids: list[str]
) -> None:
    flow = admin_client.post(FLOWS, json=flow_body("cancelled", job_ids)).json()
    run = admin_client.post(f"{FLOWS}/{flow['id']}/run").json()
    path = f"{FLOWS}/{flow['id']}/runs/{run['id']}"
    assert [(step["name"], step["status"]) for step in run["steps"]] == [
        ("build", "pending"),
        ("ship", "pending"),
    ]
    listed = read_client.get("/api/v1/tasks", params={"flow_run_id": run["id"]}).json()["items"]
    assert {task["id"] for task in listed} == {step["task_id"] for step in run["steps"]}
    assert_problem(admin_client.post(f"{path}/retry"), 409, "illegal-transition")

    cancelled = admin_client.post(f"{path}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["completed_at"] is not None
    assert [step["status"] for step in body["steps"]] == ["skipped", "skipped"]
    assert read_client.get(path).json() == body
    assert_problem(admin_client.post(f"{path}/cancel"), 409, "illegal-transition")

    retried = admin_client.post(f"{path}/retry")
    assert retried.status_code == 200, retried.text
    again = retried.json()
    assert (again["id"], again["status"], again["completed_at"]) == (run["id"], "running", None)
    assert [step["status"] for step in again["steps"]] == ["pending", "pending"]
    old_ids = {step["task_id"] for step in run["steps"]}
    assert not old_ids & {step["task_id"] for step in again["steps"]}
    everything = read_client.get("/api/v1/tasks", params={"flow_run_id": run["id"]}).json()["items"]
    assert len(everything) == 4
    assert admin_client.post(f"{path}/cancel").json()["status"] == "cancelled"


def test_unknown_runs_to_cancel_or_retry_are_404(admin_client: httpx.Client, job_ids: list[str]) -> None:
    flow = admin_client.post(FLOWS, json=flow_body("runs-404", job_ids)).json()
    other = admin_client.post(FLOWS, json=flow_body("runs-404-other", job_ids)).json()
    run = admin_client.post(f"{FLOWS}/{other['id']}/run").json()
    for action in ("cancel", "retry"):
        assert_problem(
            admin_client.post(f"{FLOWS}/{flow['id']}/runs/{uuid.uuid4()}/{action}"), 404, "not-found"
        )
        # A run exists only under its own flow.
        assert_problem(admin_client.post(f"{FLOWS}/{flow['id']}/runs/{run['id']}/{action}"), 404, "not-found")
        assert_problem(
            admin_client.post(f"{FLOWS}/{uuid.uuid4()}/runs/{run['id']}/{action}"), 404, "not-found"
        )
    assert_problem(admin_client.post(f"{FLOWS}/{uuid.uuid4()}/enable"), 404, "not-found")
    assert_problem(admin_client.get("/api/v1/tasks", params={"flow_run_id": "nope"}), 422, "invalid-input")


def test_runs_are_listed_oldest_or_latest_first(
    admin_client: httpx.Client, read_client: httpx.Client, job_ids: list[str]
) -> None:
    flow = admin_client.post(FLOWS, json=flow_body("listed-runs", job_ids)).json()
    runs = [admin_client.post(f"{FLOWS}/{flow['id']}/run").json()["id"] for _ in range(5)]

    def walk(**params: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            page = read_client.get(
                f"{FLOWS}/{flow['id']}/runs",
                params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})},
            ).json()
            seen += [run["id"] for run in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    assert walk() == runs
    assert walk(order="asc") == runs
    assert walk(order="desc") == runs[::-1]
    latest = read_client.get(f"{FLOWS}/{flow['id']}/runs", params={"order": "desc", "limit": 1}).json()
    assert [step["name"] for step in latest["items"][0]["steps"]] == ["build", "ship"]
    bad = read_client.get(f"{FLOWS}/{flow['id']}/runs", params={"order": "newest"})
    assert_problem(bad, 422, "invalid-input")
    for run_id in runs:
        admin_client.post(f"{FLOWS}/{flow['id']}/runs/{run_id}/cancel")


def test_a_run_is_found_by_its_id_alone(
    admin_client: httpx.Client, read_client: httpx.Client, job_ids: list[str]
) -> None:
    # A task names only its run (flow_run_id): the run must be reachable from that id, even once the flow
    # it belongs to is deleted.
    flow = admin_client.post(FLOWS, json=flow_body("by-run-id", job_ids)).json()
    run = admin_client.post(f"{FLOWS}/{flow['id']}/run").json()
    task = read_client.get(f"/api/v1/tasks/{run['steps'][0]['task_id']}").json()
    found = read_client.get(f"/api/v1/flow-runs/{task['flow_run_id']}")
    assert found.status_code == 200, found.text
    assert found.json() == read_client.get(f"{FLOWS}/{flow['id']}/runs/{run['id']}").json()
    assert found.json()["flow_id"] == flow["id"]
    assert admin_client.delete(f"{FLOWS}/{flow['id']}").status_code == 204
    gone = read_client.get(f"/api/v1/flow-runs/{run['id']}").json()
    assert (gone["id"], gone["flow_id"], gone["status"]) == (run["id"], flow["id"], "cancelled")
    assert_problem(read_client.get(f"/api/v1/flow-runs/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(read_client.get("/api/v1/flow-runs/nope"), 404, "not-found")


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({}, "$.job_id"),
        ({"job_id": "JOB", "flow_id": "FLOW"}, "$.flow_id"),
        ({"flow_id": str(uuid.UUID(int=7))}, "$.flow_id"),
        ({"flow_id": "FLOW", "kind": "daemon"}, "$.kind"),
        ({"flow_id": "FLOW", "kind": "flow"}, "$.kind"),
    ],
)
def test_invalid_flow_schedules_are_422(
    admin_client: httpx.Client, job_ids: list[str], fields: dict[str, Any], path: str
) -> None:
    flow = admin_client.post(FLOWS, json=flow_body(f"scheduled-{uuid.uuid4().hex[:8]}", job_ids)).json()
    body: dict[str, Any] = {"kind": "interval", "interval_secs": 60}
    body.update(
        {key: {"JOB": job_ids[0], "FLOW": flow["id"]}.get(value, value) for key, value in fields.items()}
    )
    if body["kind"] != "interval":
        body.pop("interval_secs")
    problem = assert_problem(admin_client.post("/api/v1/schedules", json=body), 422, "invalid-input")
    assert [error["path"] for error in problem["errors"]] == [path], problem


def test_flow_schedules_and_events(
    admin_client: httpx.Client, read_client: httpx.Client, job_ids: list[str]
) -> None:
    flow = admin_client.post(FLOWS, json=flow_body("on-event", job_ids)).json()
    schedule = admin_client.post(
        "/api/v1/schedules",
        json={"flow_id": flow["id"], "kind": "event", "event_name": "flow-go", "parameters": {"env": "qa"}},
    )
    assert schedule.status_code == 201, schedule.text
    assert (schedule.json()["job_id"], schedule.json()["flow_id"]) == (None, flow["id"])
    listed = read_client.get("/api/v1/schedules", params={"flow_id": flow["id"]}).json()["items"]
    assert [item["id"] for item in listed] == [schedule.json()["id"]]
    fired = admin_client.post("/api/v1/events/flow-go", json={"sha": "abc"})
    assert fired.status_code == 201, fired.text
    runs = read_client.get(f"{FLOWS}/{flow['id']}/runs").json()["items"]
    assert len(runs) == 1
    assert runs[0]["parameters"] == {"env": "qa", "sha": "abc"}
    assert set(fired.json()["task_ids"]) == {step["task_id"] for step in runs[0]["steps"]}
