"""REST API of the dashboard aggregates against a real server and database: runs per hour by outcome, per-job
failure rate and run-time percentiles, agents' load, and the open-task counts.

Tasks are triggered through the API with past (or future) times; their outcomes and attempts are written with
SQL, as an agent's reports would leave them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from apihelpers import assert_problem

STATS = "/api/v1/stats"


def trigger(client: httpx.Client, job_id: str, at: datetime) -> str:
    response = client.post(f"/api/v1/jobs/{job_id}/trigger", json={"scheduled_at": at.isoformat()})
    assert response.status_code == 201, response.text
    return str(response.json()["task_ids"][0])


def ended(conn: psycopg.Connection[Any], task_id: str, job_id: str, status: str, secs: float) -> None:
    """``task_id`` ended ``status`` after one attempt on agent stats-a that ran ``secs`` seconds."""
    instance_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO sched_task_instance (id, task_id, job_id, agent_id, attempt, status, fire_at,"
        " started_at, completed_at, exit_code)"
        " VALUES (%s, %s, %s, 'stats-a', 1, %s, now(), now() - make_interval(secs => %s), now(), 0)",
        (instance_id, task_id, job_id, status, secs),
        prepare=False,
    )
    conn.execute(
        "UPDATE sched_task SET status = %s, completed_at = now(), attempt = 1, instance_id = %s,"
        " agent_id = 'stats-a' WHERE id = %s",
        (status, instance_id, task_id),
        prepare=False,
    )


@pytest.fixture(scope="module")
def jobs(admin_client: httpx.Client, pg_conn: psycopg.Connection[Any]) -> dict[str, str]:
    made = {}
    for name in ("stats-busy", "stats-quiet"):
        body = {"name": name, "config": {"command": "bash", "script": "true"}}
        response = admin_client.post("/api/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        made[name] = response.json()["id"]
    pg_conn.execute(
        "INSERT INTO sched_agent (id, name, status, capabilities)"
        """ VALUES ('stats-a', 'stats-a', 'online', '{"capacity": 4}')""",
        prepare=False,
    )
    now = datetime.now(UTC)
    busy = made["stats-busy"]
    for status, secs in (("succeeded", 1.0), ("succeeded", 3.0), ("failed", 5.0)):
        ended(pg_conn, trigger(admin_client, busy, now - timedelta(hours=3)), busy, status, secs)
    quiet = made["stats-quiet"]
    trigger(admin_client, quiet, now - timedelta(minutes=1))  # due, no agent took it: waiting
    trigger(admin_client, quiet, now + timedelta(days=1))  # planned ahead: not history
    running = trigger(admin_client, quiet, now - timedelta(days=3))  # in the 7 days only
    pg_conn.execute(
        "INSERT INTO sched_task_instance"
        " (id, task_id, job_id, agent_id, attempt, status, fire_at, started_at)"
        " VALUES (%s, %s, %s, 'stats-a', 1, 'running', now(), now())",
        (str(uuid.uuid4()), running, quiet),
        prepare=False,
    )
    pg_conn.execute("UPDATE sched_task SET status = 'running', attempt = 1 WHERE id = %s", (running,))
    return made


def totals(buckets: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("succeeded", "failed", "cancelled", "skipped", "running", "waiting")
    return {key: sum(bucket[key] for bucket in buckets) for key in keys}


def test_runs_per_hour_count_what_happened_by_outcome(
    read_client: httpx.Client, jobs: dict[str, str]
) -> None:
    day = read_client.get(f"{STATS}/runs").json()
    assert day["window"] == "24h"
    assert day["bucket_secs"] == 3600
    assert len(day["buckets"]) == 24
    starts = [datetime.fromisoformat(bucket["start"]) for bucket in day["buckets"]]
    assert starts == sorted(starts)
    assert datetime.fromisoformat(day["until"]) <= starts[-1] + timedelta(hours=1)
    assert totals(day["buckets"]) == {
        "succeeded": 2, "failed": 1, "cancelled": 0, "skipped": 0, "running": 0, "waiting": 1
    }  # fmt: skip
    hour = next(b for b in day["buckets"] if b["succeeded"])
    assert (hour["succeeded"], hour["failed"]) == (2, 1)  # the three ran in the same hour
    assert day["sampled"] is False
    now = day["now"]
    assert (now["running"], now["due"], now["planned"]) == (1, 1, 1)
    assert now["cap"] >= 1000

    week = read_client.get(f"{STATS}/runs", params={"window": "7d"}).json()
    assert len(week["buckets"]) == 7 * 24
    assert totals(week["buckets"])["running"] == 1
    one_job = read_client.get(f"{STATS}/runs", params={"job_id": jobs["stats-quiet"]}).json()
    assert totals(one_job["buckets"])["succeeded"] == 0


def test_job_stats_give_failure_rate_and_run_time_percentiles(
    read_client: httpx.Client, jobs: dict[str, str]
) -> None:
    answer = read_client.get(f"{STATS}/jobs").json()
    by_job = {item["job_id"]: item for item in answer["items"]}
    busy = by_job[jobs["stats-busy"]]
    assert (busy["runs"], busy["succeeded"], busy["failed"]) == (3, 2, 1)
    assert busy["failure_rate"] == pytest.approx(1 / 3)
    assert busy["p50_secs"] == pytest.approx(3.0, abs=0.01)
    assert busy["p95_secs"] == pytest.approx(4.8, abs=0.01)  # interpolated between 3 s and 5 s
    quiet = by_job[jobs["stats-quiet"]]
    assert (quiet["runs"], quiet["failure_rate"], quiet["p50_secs"]) == (1, None, None)
    assert [item["job_id"] for item in answer["items"]] == [jobs["stats-busy"], jobs["stats-quiet"]]
    only = read_client.get(f"{STATS}/jobs", params={"job_id": jobs["stats-quiet"], "window": "7d"}).json()
    assert [(item["job_id"], item["runs"]) for item in only["items"]] == [(jobs["stats-quiet"], 2)]


def test_agent_stats_give_load_now_and_tasks_of_the_window(
    read_client: httpx.Client, jobs: dict[str, str]
) -> None:
    answer = read_client.get(f"{STATS}/agents", params={"window": "7d"}).json()
    assert answer["items"] == [
        {"agent_id": "stats-a", "status": "online", "capacity": 4, "running": 1, "tasks": 3}
    ]


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        ("runs", {"window": "30d"}, "$.window"),
        ("jobs", {"limit": "1000"}, "$.limit"),
        ("jobs", {"job_id": "x"}, "$.job_id"),
        ("agents", {"since": "yesterday"}, "$.since"),
    ],
)
def test_bad_stats_queries_are_422_naming_the_parameter(
    read_client: httpx.Client, path: str, params: dict[str, str], where: str
) -> None:
    problem = assert_problem(read_client.get(f"{STATS}/{path}", params=params), 422, "invalid-input")
    assert problem["errors"][0]["path"] == where
