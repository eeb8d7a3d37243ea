"""Hostile request bodies against a real server process: each is refused as a problem in our own words.

Deeply nested JSON must not exhaust the server's stack (a 500), and values the database cannot store must
be refused without passing the database's own error text on to the client.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from apihelpers import assert_problem
from serverfixtures import ServerProcess

DEPTHS = [65, 500, 900, 990, 1200, 5000, 100_000]


def _nested(depth: int, opener: str = '{"a":', closer: str = "}") -> str:
    return opener * depth + "1" + closer * depth


@pytest.fixture(scope="module")
def job_id(server_process: ServerProcess) -> str:
    created = httpx.post(
        f"{server_process.url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {server_process.admin_token}"},
        json={"name": "hostile-input", "config": {"command": "bash", "script": "true"}},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _post(client: httpx.Client, path: str, body: str) -> httpx.Response:
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("depth", DEPTHS)
def test_deeply_nested_event_payload_is_refused(server_client: httpx.Client, depth: int) -> None:
    response = _post(server_client, "/api/v1/events/deep", '{"k":' + _nested(depth) + "}")
    problem = assert_problem(response, response.status_code, _type_of(response))
    assert response.status_code in (400, 422), response.text
    assert "nested" in problem["detail"]


@pytest.mark.parametrize("depth", DEPTHS)
def test_deeply_nested_lists_in_parameters_are_refused(
    server_client: httpx.Client, job_id: str, depth: int
) -> None:
    body = '{"parameters":{"p":' + _nested(depth, "[", "]") + "}}"
    response = _post(server_client, f"/api/v1/jobs/{job_id}/trigger", body)
    assert response.status_code in (400, 422), response.text
    assert "nested" in assert_problem(response, response.status_code, _type_of(response))["detail"]


def test_nesting_within_the_limit_is_accepted(server_client: httpx.Client, job_id: str) -> None:
    body = '{"parameters":{"p":' + _nested(30) + "}}"
    response = _post(server_client, f"/api/v1/jobs/{job_id}/trigger", body)
    assert response.status_code == 201, response.text


def _type_of(response: httpx.Response) -> str:
    return "malformed-body" if response.status_code == 400 else "invalid-input"


# Times PostgreSQL can hold but Python cannot: year 1 at +14:00 is 31 December of 1 BC in UTC.
OUT_OF_RANGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
DATABASE_WORDS = ["BC", "too small", "too large", "out of range", "before year", "timestamp"]


@pytest.mark.parametrize("when", OUT_OF_RANGE_TIMES)
def test_schedule_time_out_of_range_is_refused_in_our_words(
    server_client: httpx.Client, job_id: str, when: str
) -> None:
    schedule: dict[str, Any] = {
        "job_id": job_id,
        "kind": "cron",
        "cron_expression": "0 0 * * *",
        "start_time": when,
    }
    response = server_client.post("/api/v1/schedules", json=schedule)
    problem = assert_problem(response, 422, "invalid-schedule")
    assert not [word for word in DATABASE_WORDS if word in problem["detail"]], problem
    assert "date or time" in problem["detail"]
    # Nothing half-stored: the job's schedules still list.
    listed = server_client.get("/api/v1/schedules", params={"job_id": job_id})
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("when", OUT_OF_RANGE_TIMES)
def test_trigger_time_out_of_range_is_refused_in_our_words(
    server_client: httpx.Client, job_id: str, when: str
) -> None:
    response = server_client.post(f"/api/v1/jobs/{job_id}/trigger", json={"scheduled_at": when})
    problem = assert_problem(response, 422, "invalid-input")
    assert not [word for word in DATABASE_WORDS if word in problem["detail"]], problem
    assert "date or time" in problem["detail"]
    listed = server_client.get("/api/v1/tasks", params={"job_id": job_id})
    assert listed.status_code == 200, listed.text
