"""REST API of jobs against a real server and database: CRUD, enable/disable, trigger, and every error."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from apihelpers import assert_problem

JOBS = "/api/v1/jobs"


def job_body(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "config": {"command": "bash", "script": "echo hi"}, **fields}


def create_job(client: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post(JOBS, json=job_body(name, **fields))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_job_answers_201_with_location(admin_client: httpx.Client) -> None:
    response = admin_client.post(JOBS, json=job_body("create-me", description="first"))
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"{JOBS}/{job['id']}"
    assert response.headers["content-type"] == "application/json"
    assert job["name"] == "create-me"
    assert job["namespace"] == "default"
    assert job["status"] == "enabled"
    assert job["config"]["command"] == "bash"
    assert job["config"]["retry"]["max_retries"] == 0
    assert job["created_by"] == "tests-admin"
    fetched = admin_client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == job


def test_duplicate_job_name_is_a_conflict(admin_client: httpx.Client) -> None:
    create_job(admin_client, "twice")
    response = admin_client.post(JOBS, json=job_body("twice"))
    assert_problem(response, 409, "conflict")
    # The same name in another namespace is fine.
    create_job(admin_client, "twice", namespace="other")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"config": {"command": "bash"}}, "$.name"),
        ({"name": "x"}, "$.config"),
        ({"name": "x", "config": {}}, "$.config.command"),
        ({"name": "x", "config": {"command": "zsh"}}, "$.config.command"),
        ({"name": "bad name", "config": {"command": "bash"}}, "$.name"),
        ({"name": "x", "config": {"command": "bash", "timeout_secs": -1}}, "$.config.timeout_secs"),
        (
            {"name": "x", "config": {"command": "bash", "retry": {"max_retries": 1000}}},
            "$.config.retry.max_retries",
        ),
        ({"name": "x", "colour": "red", "config": {"command": "bash"}}, "$.colour"),
        ({"name": "x", "config": {"command": "bash", "args": ["a\u0000b"]}}, "$.config.args[0]"),
    ],
)
def test_invalid_job_is_a_422_naming_the_field(
    admin_client: httpx.Client, body: dict[str, Any], path: str
) -> None:
    response = admin_client.post(JOBS, json=body)
    problem = assert_problem(response, 422, "invalid-input")
    assert path in [error["path"] for error in problem["errors"]]


def test_malformed_and_mistyped_bodies(admin_client: httpx.Client) -> None:
    malformed = admin_client.post(JOBS, content=b'{"name": ', headers={"content-type": "application/json"})
    assert_problem(malformed, 400, "malformed-body")
    not_json = admin_client.post(JOBS, content=b"name=x", headers={"content-type": "text/plain"})
    assert_problem(not_json, 415, "unsupported-media-type")
    huge = admin_client.post(
        JOBS, content=b" " * (1024 * 1024 + 1), headers={"content-type": "application/json"}
    )
    assert_problem(huge, 413, "body-too-large")


def test_get_unknown_or_malformed_job_is_404(admin_client: httpx.Client) -> None:
    assert_problem(admin_client.get(f"{JOBS}/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(admin_client.get(f"{JOBS}/not-a-uuid"), 404, "not-found")
    for method in ("PATCH", "DELETE"):
        response = admin_client.request(method, f"{JOBS}/{uuid.uuid4()}", json={})
        assert_problem(response, 404, "not-found")
    for action in ("enable", "disable", "trigger"):
        assert_problem(admin_client.post(f"{JOBS}/{uuid.uuid4()}/{action}"), 404, "not-found")


def test_list_jobs_pages_and_filters(admin_client: httpx.Client) -> None:
    names = [f"listed-{i}" for i in range(3)]
    for name in names:
        create_job(admin_client, name, namespace="paging")
    first = admin_client.get(JOBS, params={"namespace": "paging", "limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [job["name"] for job in page["items"]] == names[:2]
    assert page["next_cursor"]
    second = admin_client.get(
        JOBS, params={"namespace": "paging", "limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [job["name"] for job in second["items"]] == names[2:]
    assert second["next_cursor"] is None
    everything = admin_client.get(JOBS, params={"limit": 1000}).json()
    assert {job["namespace"] for job in everything["items"]} >= {"default", "paging"}


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": "0"}, "$.limit"),
        ({"limit": "many"}, "$.limit"),
        ({"namespace": "Not Valid"}, "$.namespace"),
        ({"cursor": "!!!"}, "$.cursor"),
        ({"colour": "red"}, "$.colour"),
    ],
)
def test_bad_list_parameters_are_422(admin_client: httpx.Client, params: dict[str, str], path: str) -> None:
    problem = assert_problem(admin_client.get(JOBS, params=params), 422, "invalid-input")
    assert problem["errors"][0]["path"] == path


def test_patch_job(admin_client: httpx.Client) -> None:
    job = create_job(admin_client, "patch-me")
    url = f"{JOBS}/{job['id']}"
    response = admin_client.patch(
        url, json={"description": "changed", "config": {"command": "python", "script": "print(1)"}}
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["description"] == "changed"
    assert patched["config"]["command"] == "python"
    assert patched["name"] == "patch-me"
    assert patched["updated_at"] >= job["updated_at"]
    problem = assert_problem(admin_client.patch(url, json={"status": "sleeping"}), 422, "invalid-input")
    assert problem["errors"][0]["path"] == "$.status"
    create_job(admin_client, "taken")
    assert_problem(admin_client.patch(url, json={"name": "taken"}), 409, "conflict")


def test_enable_disable_delete(admin_client: httpx.Client) -> None:
    job = create_job(admin_client, "switch")
    url = f"{JOBS}/{job['id']}"
    assert admin_client.post(f"{url}/disable").json()["status"] == "disabled"
    assert admin_client.post(f"{url}/disable").json()["status"] == "disabled"
    assert admin_client.post(f"{url}/enable").json()["status"] == "enabled"
    deleted = admin_client.delete(url)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(admin_client.get(url), 404, "not-found")
    assert_problem(admin_client.delete(url), 404, "not-found")


def test_trigger_job_creates_a_task(admin_client: httpx.Client) -> None:
    job = create_job(admin_client, "trigger-me")
    url = f"{JOBS}/{job['id']}/trigger"
    response = admin_client.post(url, json={"parameters": {"date": "2024-01-01"}, "priority": 5})
    assert response.status_code == 201, response.text
    [task_id] = response.json()["task_ids"]
    task = admin_client.get(f"/api/v1/tasks/{task_id}").json()
    assert task["job_id"] == job["id"]
    assert task["parameters"] == {"date": "2024-01-01"}
    assert task["priority"] == 5
    # No body at all: run now, no parameters.
    bare = admin_client.post(url)
    assert bare.status_code == 201, bare.text
    assert len(bare.json()["task_ids"]) == 1
    problem = assert_problem(admin_client.post(url, json={"priority": 5000}), 422, "invalid-input")
    assert problem["errors"][0]["path"] == "$.priority"
    naive = admin_client.post(url, json={"scheduled_at": "2030-01-01T00:00:00"})
    assert_problem(naive, 422, "invalid-input")


def test_trigger_job_in_bulk(admin_client: httpx.Client) -> None:
    job = create_job(
        admin_client, "trigger-many", config={"command": "bash", "script": "true", "priority": 3}
    )
    url = f"{JOBS}/{job['id']}/trigger"
    counted = admin_client.post(url, json={"count": 25, "parameters": {"batch": 1}})
    assert counted.status_code == 201, counted.text
    task_ids = counted.json()["task_ids"]
    assert len(set(task_ids)) == 25
    listed = admin_client.get("/api/v1/tasks", params={"job_id": job["id"], "limit": 100}).json()["items"]
    assert {task["id"] for task in listed} == set(task_ids)
    assert {(task["parameters"]["batch"], task["priority"], task["status"]) for task in listed} == {
        (1, 3, "pending")
    }

    runs = [{}, {"parameters": {"day": "tue"}, "priority": -2}, {"scheduled_at": "2030-01-01T00:00:00Z"}]
    ran = admin_client.post(url, json={"parameters": {"day": "mon"}, "priority": 7, "runs": runs})
    assert ran.status_code == 201, ran.text
    made = [admin_client.get(f"/api/v1/tasks/{task_id}").json() for task_id in ran.json()["task_ids"]]
    assert [(task["parameters"], task["priority"]) for task in made] == [
        ({"day": "mon"}, 7),
        ({"day": "tue"}, -2),
        ({"day": "mon"}, 7),
    ]
    assert made[2]["scheduled_at"].startswith("2030-01-01T00:00:00")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"count": 0}, "$.count"),
        ({"count": 10_001}, "$.count"),
        ({"count": "3"}, "$.count"),
        ({"runs": []}, "$.runs"),
        ({"runs": [{}] * 10_001}, "$.runs"),
        ({"runs": [{}, {"priority": 1001}]}, "$.runs[1].priority"),
        ({"runs": [{}, {"params": {}}]}, "$.runs[1].params"),
        ({"runs": [{}, {"scheduled_at": "2030-01-01T00:00:00"}]}, "$.runs[1].scheduled_at"),
        ({"count": 2, "runs": [{}]}, "$.count"),
    ],
)
def test_bad_bulk_trigger_is_a_422_naming_the_field(
    admin_client: httpx.Client, body: dict[str, Any], path: str
) -> None:
    job = create_job(admin_client, f"bulk-refused-{uuid.uuid4().hex[:8]}")
    problem = assert_problem(
        admin_client.post(f"{JOBS}/{job['id']}/trigger", json=body), 422, "invalid-input"
    )
    assert problem["errors"][0]["path"] == path
    assert admin_client.get("/api/v1/tasks", params={"job_id": job["id"]}).json()["items"] == []
