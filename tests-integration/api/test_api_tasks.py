"""REST API of tasks and instances against a real server and database: filters, paging, cancel, retry, logs.

Agents are what move tasks through dispatched/running/succeeded; here those states are written with SQL so
that the API's answers to them (a 409 for cancelling a finished task, an attempt with logs) can be checked.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest
from apihelpers import assert_problem

TASKS = "/api/v1/tasks"
INSTANCES = "/api/v1/instances"


@pytest.fixture(scope="module")
def job_id(admin_client: httpx.Client) -> str:
    response = admin_client.post(
        "/api/v1/jobs", json={"name": "work", "config": {"command": "bash", "script": "true"}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def trigger(client: httpx.Client, job_id: str, **body: Any) -> str:
    response = client.post(f"/api/v1/jobs/{job_id}/trigger", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["task_ids"][0])


def finish(conn: psycopg.Connection[Any], task_id: str, status: str = "succeeded") -> None:
    conn.execute(
        "UPDATE sched_task SET status = %s, completed_at = now() WHERE id = %s",
        (status, task_id),
        prepare=False,
    )


def add_instance(conn: psycopg.Connection[Any], task_id: str, job_id: str) -> str:
    instance_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO sched_task_instance (id, task_id, job_id, agent_id, attempt, status, fire_at,"
        " started_at, completed_at, exit_code, output)"
        " VALUES (%s, %s, %s, 'agent-9', 1, 'succeeded', now(), now(), now(), 0, 'hello')",
        (instance_id, task_id, job_id),
    )
    conn.execute(
        "UPDATE sched_task SET instance_id = %s, agent_id = 'agent-9', attempt = 1 WHERE id = %s",
        (instance_id, task_id),
    )
    for seq, (stream, text) in enumerate(
        [("stdout", b"line 1\n"), ("stderr", b"oops\n"), ("stdout", b"\xffend\n")]
    ):
        conn.execute(
            "INSERT INTO sched_task_log (instance_id, stream, seq, content) VALUES (%s, %s, %s, %s)",
            (instance_id, stream, seq, text),
        )
    return instance_id


def test_get_task_and_its_attempts(
    admin_client: httpx.Client, pg_conn: psycopg.Connection[Any], job_id: str
) -> None:
    task_id = trigger(admin_client, job_id, parameters={"n": 1})
    task = admin_client.get(f"{TASKS}/{task_id}").json()
    assert (task["id"], task["job_id"], task["status"], task["parameters"]) == (
        task_id,
        job_id,
        "pending",
        {"n": 1},
    )
    assert admin_client.get(f"{TASKS}/{task_id}/instances").json() == {"items": [], "next_cursor": None}
    finish(pg_conn, task_id)
    instance_id = add_instance(pg_conn, task_id, job_id)
    attempts = admin_client.get(f"{TASKS}/{task_id}/instances").json()
    assert [item["id"] for item in attempts["items"]] == [instance_id]
    instance = admin_client.get(f"{INSTANCES}/{instance_id}").json()
    assert (instance["task_id"], instance["agent_id"], instance["status"], instance["exit_code"]) == (
        task_id,
        "agent-9",
        "succeeded",
        0,
    )
    assert instance["output"] == "hello"


def test_logs_page_after_a_position(
    admin_client: httpx.Client, pg_conn: psycopg.Connection[Any], job_id: str
) -> None:
    task_id = trigger(admin_client, job_id)
    finish(pg_conn, task_id)
    instance_id = add_instance(pg_conn, task_id, job_id)
    url = f"{INSTANCES}/{instance_id}/logs"
    page = admin_client.get(url, params={"limit": 2}).json()
    assert [(entry["stream"], entry["content"]) for entry in page["items"]] == [
        ("stdout", "line 1\n"),
        ("stderr", "oops\n"),
    ]
    rest = admin_client.get(url, params={"after_seq": page["next_after_seq"]}).json()
    assert [entry["content"] for entry in rest["items"]] == ["\ufffdend\n"]
    idle = admin_client.get(url, params={"after_seq": rest["next_after_seq"]}).json()
    assert idle == {"items": [], "next_after_seq": rest["next_after_seq"]}
    assert_problem(admin_client.get(url, params={"after_seq": -1}), 422, "invalid-input")
    assert_problem(admin_client.get(url, params={"limit": 0}), 422, "invalid-input")


def test_unknown_task_and_instance_are_404(admin_client: httpx.Client) -> None:
    for path in (f"{TASKS}/{uuid.uuid4()}", f"{TASKS}/{uuid.uuid4()}/instances", f"{TASKS}/x"):
        assert_problem(admin_client.get(path), 404, "not-found")
    for action in ("cancel", "retry"):
        assert_problem(admin_client.post(f"{TASKS}/{uuid.uuid4()}/{action}"), 404, "not-found")
    assert_problem(admin_client.get(f"{INSTANCES}/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(admin_client.get(f"{INSTANCES}/{uuid.uuid4()}/logs"), 404, "not-found")


def test_cancel_then_retry(admin_client: httpx.Client, job_id: str) -> None:
    task_id = trigger(admin_client, job_id, scheduled_at="2099-01-01T00:00:00Z")
    assert_problem(admin_client.post(f"{TASKS}/{task_id}/retry"), 409, "illegal-transition")
    cancelled = admin_client.post(f"{TASKS}/{task_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert_problem(admin_client.post(f"{TASKS}/{task_id}/cancel"), 409, "illegal-transition")
    retried = admin_client.post(f"{TASKS}/{task_id}/retry")
    assert retried.status_code == 201, retried.text
    new = retried.json()
    assert new["id"] != task_id
    assert new["status"] == "pending"
    assert retried.headers["location"] == f"{TASKS}/{new['id']}"


def test_cancelling_a_succeeded_task_is_a_conflict(
    admin_client: httpx.Client, pg_conn: psycopg.Connection[Any], job_id: str
) -> None:
    task_id = trigger(admin_client, job_id)
    finish(pg_conn, task_id, "succeeded")
    problem = assert_problem(admin_client.post(f"{TASKS}/{task_id}/cancel"), 409, "illegal-transition")
    assert "succeeded" in problem["detail"]
    assert admin_client.get(f"{TASKS}/{task_id}").json()["status"] == "succeeded"
    assert_problem(admin_client.post(f"{TASKS}/{task_id}/retry"), 409, "illegal-transition")


def ids_by_pages_of_two(client: httpx.Client, query: dict[str, str]) -> list[str]:
    """The ids of every task matching ``query``, read two to a page by following the cursors."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = client.get(
            TASKS, params={**query, "limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        ids.extend(task["id"] for task in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_list_tasks_filters_and_pages(admin_client: httpx.Client, pg_conn: psycopg.Connection[Any]) -> None:
    body = {"name": "listing", "config": {"command": "bash", "script": "true"}}
    job = admin_client.post("/api/v1/jobs", json=body).json()
    at = [f"2031-01-0{day}T00:00:00Z" for day in range(1, 6)]
    ids = [trigger(admin_client, job["id"], scheduled_at=moment) for moment in at]
    finish(pg_conn, ids[0], "failed")
    finish(pg_conn, ids[1], "succeeded")
    base = {"job_id": job["id"]}
    everything = admin_client.get(TASKS, params=base).json()
    assert [task["id"] for task in everything["items"]] == ids[::-1]  # latest scheduled first
    failed_or_ok = admin_client.get(
        TASKS, params=[*base.items(), ("status", "failed"), ("status", "succeeded")]
    )
    assert {task["id"] for task in failed_or_ok.json()["items"]} == {ids[0], ids[1]}
    window = admin_client.get(
        TASKS, params={**base, "scheduled_after": "2031-01-02T00:00:00+00:00", "scheduled_before": at[3]}
    ).json()
    assert [task["id"] for task in window["items"]] == [ids[2], ids[1]]
    pages = ids_by_pages_of_two(admin_client, base)
    assert pages == ids[::-1]
    none = admin_client.get(TASKS, params={"agent_id": "nobody", "schedule_id": str(uuid.uuid4())}).json()
    assert none == {"items": [], "next_cursor": None}


def test_list_tasks_earliest_first_pages_forward(admin_client: httpx.Client) -> None:
    body = {"name": "upcoming", "config": {"command": "bash", "script": "true"}}
    job = admin_client.post("/api/v1/jobs", json=body).json()
    at = [f"2032-02-0{day}T00:00:00Z" for day in range(1, 6)]
    ids = [trigger(admin_client, job["id"], scheduled_at=moment) for moment in at]
    base = {"job_id": job["id"], "order": "asc", "scheduled_after": at[1]}
    pages = ids_by_pages_of_two(admin_client, base)
    assert pages == ids[1:]  # earliest first, from the inclusive lower bound
    flow_filtered = admin_client.get(TASKS, params={"flow_run_id": str(uuid.uuid4())}).json()
    assert flow_filtered == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"status": "sleeping"}, "$.status"),
        ({"job_id": "42"}, "$.job_id"),
        ({"schedule_id": "x"}, "$.schedule_id"),
        ({"agent_id": "bad agent"}, "$.agent_id"),
        ({"scheduled_after": "yesterday"}, "$.scheduled_after"),
        ({"scheduled_before": "2031-01-01T00:00:00"}, "$.scheduled_before"),
        ({"limit": "1001"}, "$.limit"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "$.cursor"),
        ({"order": "newest"}, "$.order"),
        ({"flow_run_id": "x"}, "$.flow_run_id"),
        ({"stauts": "failed"}, "$.stauts"),
    ],
)
def test_bad_task_filters_are_422_naming_the_parameter(
    read_client: httpx.Client, params: dict[str, str], path: str
) -> None:
    problem = assert_problem(read_client.get(TASKS, params=params), 422, "invalid-input")
    assert problem["errors"][0]["path"] == path
