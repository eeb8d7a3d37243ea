"""REST API of schedules against a real server and database: CRUD, enable/disable, preview, next, slots."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from apihelpers import assert_problem

SCHEDULES = "/api/v1/schedules"
PREVIEW = f"{SCHEDULES}/preview"


@pytest.fixture(scope="module")
def job_id(admin_client: httpx.Client) -> str:
    response = admin_client.post(
        "/api/v1/jobs", json={"name": "scheduled", "config": {"command": "bash", "script": "true"}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def create_schedule(client: httpx.Client, job_id: str, **fields: Any) -> dict[str, Any]:
    body = {"job_id": job_id, "kind": "cron", "cron_expression": "0 3 * * *", **fields}
    response = client.post(SCHEDULES, json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{SCHEDULES}/{response.json()['id']}"
    schedule: dict[str, Any] = response.json()
    return schedule


def test_create_get_list_schedule(admin_client: httpx.Client, read_client: httpx.Client, job_id: str) -> None:
    schedule = create_schedule(admin_client, job_id, timezone="Europe/London", parameters={"a": 1})
    assert schedule["kind"] == "cron"
    assert schedule["timezone"] == "Europe/London"
    assert schedule["status"] == "enabled"
    assert schedule["parameters"] == {"a": 1}
    assert read_client.get(f"{SCHEDULES}/{schedule['id']}").json()["id"] == schedule["id"]
    listed = read_client.get(SCHEDULES, params={"job_id": job_id, "limit": 1000}).json()
    assert schedule["id"] in [item["id"] for item in listed["items"]]
    other = read_client.get(SCHEDULES, params={"job_id": str(uuid.uuid4())}).json()
    assert other == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"cron_expression": "61 * * * *"}, "$.cron_expression"),
        ({"cron_expression": "not a cron"}, "$.cron_expression"),
        ({"timezone": "Mars/Olympus_Mons"}, "$.timezone"),
        ({"kind": "interval", "cron_expression": None}, "$.interval_secs"),
        ({"kind": "interval", "cron_expression": None, "interval_secs": 0}, "$.interval_secs"),
        ({"kind": "sometimes"}, "$.kind"),
        ({"job_id": "not-a-uuid"}, "$.job_id"),
        ({"misfire_policy": "never"}, "$.misfire_policy"),
        ({"start_deadline_secs": -1}, "$.start_deadline_secs"),
    ],
)
def test_invalid_schedule_is_422_naming_the_field(
    admin_client: httpx.Client, job_id: str, fields: dict[str, Any], path: str
) -> None:
    body = {"job_id": job_id, "kind": "cron", "cron_expression": "0 3 * * *", **fields}
    problem = admin_client.post(SCHEDULES, json=body).json()
    assert problem["status"] == 422, problem
    assert path in [error["path"] for error in problem["errors"]]


def test_misfire_defaults_and_the_start_deadline(admin_client: httpx.Client, job_id: str) -> None:
    schedule = create_schedule(admin_client, job_id)
    assert (schedule["misfire_policy"], schedule["misfire_grace_secs"], schedule["misfire_max_runs"]) == (
        "run_once",
        60,
        100,
    )
    assert schedule["start_deadline_secs"] is None
    url = f"{SCHEDULES}/{schedule['id']}"
    assert admin_client.patch(url, json={"start_deadline_secs": 30}).json()["start_deadline_secs"] == 30
    assert admin_client.get(url).json()["start_deadline_secs"] == 30
    assert admin_client.patch(url, json={"start_deadline_secs": None}).json()["start_deadline_secs"] is None
    strict = create_schedule(
        admin_client, job_id, misfire_policy="skip", misfire_grace_secs=0, start_deadline_secs=5.5
    )
    assert (strict["misfire_policy"], strict["misfire_grace_secs"], strict["start_deadline_secs"]) == (
        "skip",
        0,
        5.5,
    )


def test_schedule_of_a_missing_job_is_422(admin_client: httpx.Client) -> None:
    body = {"job_id": str(uuid.uuid4()), "kind": "cron", "cron_expression": "0 3 * * *"}
    problem = assert_problem(admin_client.post(SCHEDULES, json=body), 422, "invalid-input")
    assert problem["errors"][0]["path"] == "$.job_id"


def test_patch_enable_disable_delete(admin_client: httpx.Client, job_id: str) -> None:
    schedule = create_schedule(admin_client, job_id)
    url = f"{SCHEDULES}/{schedule['id']}"
    patched = admin_client.patch(url, json={"cron_expression": "*/5 * * * *", "timezone": "Asia/Kolkata"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["cron_expression"] == "*/5 * * * *"
    bad = assert_problem(admin_client.patch(url, json={"cron_expression": "* * *"}), 422, "invalid-schedule")
    assert bad["errors"][0]["path"] == "$.cron_expression"
    assert_problem(admin_client.patch(url, json={"kind": "once"}), 422, "invalid-input")
    assert admin_client.post(f"{url}/disable").json()["status"] == "disabled"
    assert admin_client.get(f"{url}/next").json() == {"fire_times": []}
    assert admin_client.post(f"{url}/enable").json()["status"] == "enabled"
    assert admin_client.delete(url).status_code == 204
    assert_problem(admin_client.get(url), 404, "not-found")


def test_unknown_schedule_is_404(admin_client: httpx.Client) -> None:
    missing = f"{SCHEDULES}/{uuid.uuid4()}"
    assert_problem(admin_client.get(missing), 404, "not-found")
    assert_problem(admin_client.patch(missing, json={}), 404, "not-found")
    assert_problem(admin_client.delete(missing), 404, "not-found")
    for suffix in ("enable", "disable"):
        assert_problem(admin_client.post(f"{missing}/{suffix}"), 404, "not-found")
    for suffix in ("next", "slots"):
        assert_problem(admin_client.get(f"{missing}/{suffix}"), 404, "not-found")
    assert_problem(admin_client.get(f"{SCHEDULES}/12345"), 404, "not-found")


def test_preview_follows_dst_in_the_schedule_zone(read_client: httpx.Client) -> None:
    # 02:30 does not exist in New York on 2024-03-10: it fires once right after the jump, at 03:00 EDT.
    body = {
        "kind": "cron",
        "cron_expression": "30 2 * * *",
        "timezone": "America/New_York",
        "from": "2024-03-09T12:00:00Z",
        "count": 3,
    }
    response = read_client.post(PREVIEW, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fire_times": ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00"]
    }
    # 01:30 happens twice on 2024-11-03: it fires once.
    body.update(cron_expression="30 1 * * *", **{"from": "2024-11-02T12:00:00Z"})
    assert read_client.post(PREVIEW, json=body).json()["fire_times"] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
        "2024-11-05T01:30:00-05:00",
    ]


def test_preview_interval_and_once(read_client: httpx.Client) -> None:
    interval = {
        "kind": "interval",
        "interval_secs": 90,
        "timezone": "Asia/Kolkata",
        "start_time": "2024-01-01T00:00:00Z",
        "max_count": 2,
        "from": "2024-01-01T00:00:00Z",
    }
    assert read_client.post(PREVIEW, json=interval).json()["fire_times"] == [
        "2024-01-01T05:31:30+05:30",
        "2024-01-01T05:33:00+05:30",
    ]
    once = {"kind": "once", "start_time": "2030-01-01T00:00:00Z", "from": "2024-01-01T00:00:00+01:00"}
    assert read_client.post(PREVIEW, json=once).json()["fire_times"] == ["2030-01-01T00:00:00+00:00"]


def test_preview_defaults_to_now_and_ten(read_client: httpx.Client) -> None:
    times = read_client.post(PREVIEW, json={"kind": "cron", "cron_expression": "@hourly"}).json()[
        "fire_times"
    ]
    assert len(times) == 10
    assert all(time.endswith("+00:00") for time in times)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"kind": "cron", "cron_expression": "* * * * * * * *"}, "$.cron_expression"),
        ({"kind": "cron", "cron_expression": "0 3 * * *", "timezone": "Nowhere/Town"}, "$.timezone"),
        ({"kind": "cron"}, "$.cron_expression"),
        ({"kind": "cron", "cron_expression": "@hourly", "from": "2024-01-01T00:00:00"}, "$.from"),
        ({"kind": "cron", "cron_expression": "@hourly", "count": 0}, "$.count"),
        ({"kind": "cron", "cron_expression": "@hourly", "count": 1001}, "$.count"),
        ({"kind": "event"}, "$.kind"),
        ({"kind": "once"}, "$.start_time"),
    ],
)
def test_invalid_preview_is_422_naming_the_field(
    read_client: httpx.Client, body: dict[str, Any], path: str
) -> None:
    problem = read_client.post(PREVIEW, json=body).json()
    assert problem["status"] == 422, problem
    assert problem["type"].startswith("https://hetuflow.dev/problems/invalid-")
    assert problem["errors"][0]["path"] == path


def test_next_fire_times_of_a_stored_schedule(admin_client: httpx.Client, job_id: str) -> None:
    schedule = create_schedule(
        admin_client, job_id, cron_expression="0 0 1 1 *", timezone="Australia/Lord_Howe"
    )
    url = f"{SCHEDULES}/{schedule['id']}/next"
    times = admin_client.get(url, params={"count": 3}).json()["fire_times"]
    assert len(times) == 3
    # New Year is in Lord Howe's summer time: UTC+11.
    assert all(time.endswith("-01-01T00:00:00+11:00") for time in times)
    assert len(admin_client.get(url).json()["fire_times"]) == 10
    assert_problem(admin_client.get(url, params={"count": 0}), 422, "invalid-input")
    event = create_schedule(admin_client, job_id, kind="event", cron_expression=None, event_name="ping")
    assert admin_client.get(f"{SCHEDULES}/{event['id']}/next").json() == {"fire_times": []}


def test_next_lists_planned_runs_of_a_max_count_schedule(admin_client: httpx.Client, job_id: str) -> None:
    # All three runs fall inside the generation horizon, so the generator plans them (fire_count reaches 3)
    # before any is due; they are still the schedule's next fire times.
    start = (datetime.now(UTC) + timedelta(minutes=2)).replace(microsecond=0)
    schedule = create_schedule(
        admin_client,
        job_id,
        kind="interval",
        cron_expression=None,
        interval_secs=60,
        start_time=start.isoformat(),
        max_count=3,
    )
    url = f"{SCHEDULES}/{schedule['id']}"
    deadline = time.monotonic() + 10
    while admin_client.get(url).json()["fire_count"] < 3:
        assert time.monotonic() < deadline, "the generator did not plan the schedule's runs"
        time.sleep(0.05)
    times = admin_client.get(f"{url}/next", params={"count": 5}).json()["fire_times"]
    assert [datetime.fromisoformat(t) for t in times] == [start + timedelta(seconds=60 * k) for k in range(3)]


def test_slots_record(admin_client: httpx.Client, pg_conn: psycopg.Connection[Any], job_id: str) -> None:
    schedule = create_schedule(admin_client, job_id, cron_expression="0 0 1 1 *")
    url = f"{SCHEDULES}/{schedule['id']}/slots"
    assert admin_client.get(url).json() == {"items": [], "next_cursor": None}
    pg_conn.execute(
        "INSERT INTO sched_schedule_slot (schedule_id, scheduled_at, outcome, detail) VALUES"
        " (%(id)s, '2024-01-01T00:00:00Z', 'missed', 'server down'),"
        " (%(id)s, '2025-01-01T00:00:00Z', 'skipped_overlap', 'previous run still going')",
        {"id": schedule["id"]},
    )
    first = admin_client.get(url, params={"limit": 1}).json()
    assert [(slot["outcome"], slot["scheduled_at"]) for slot in first["items"]] == [
        ("skipped_overlap", "2025-01-01T00:00:00Z")
    ]
    second = admin_client.get(url, params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [(slot["outcome"], slot["detail"]) for slot in second["items"]] == [("missed", "server down")]
    assert second["next_cursor"] is None
    assert_problem(admin_client.get(url, params={"cursor": "garbage"}), 422, "invalid-input")
