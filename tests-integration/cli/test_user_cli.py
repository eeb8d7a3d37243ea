"""The ``hetuflow`` executable for daily work against a real server and a real agent: ``run --wait`` exits
with the task's status, ``run --follow`` prints the job's output live, ``logs``, the listings in table and
JSON form, ``cron`` on a DST day, login, and one-line errors (unreachable, 401, 403, 422, usage).

One server and one agent for the module.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hetuflowcli import Hetuflow
from pipelinefixtures import AgentPool, Pipeline
from serverfixtures import free_port


@pytest.fixture(scope="module")
def agent(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pool = AgentPool(pipeline, tmp_path_factory.mktemp("agents"), "user-cli")
    try:
        yield pool.start("user-cli-agent").agent_id
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def hetuflow(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Hetuflow:
    return Hetuflow(pipeline.server.url, pipeline.server.admin_token, tmp_path_factory.mktemp("config"))


def _job(pipeline: Pipeline, name: str, script: str, **config: object) -> str:
    body = {"name": name, "config": {"command": "bash", "script": script, **config}}
    return str(pipeline.call("POST", "/jobs", json=body, expect=201)["id"])


def test_run_wait_exits_with_the_task_status(hetuflow: Hetuflow, pipeline: Pipeline, agent: str) -> None:
    _job(pipeline, "fails-with-7", "echo about to fail; exit 7")
    _job(pipeline, "succeeds", "true")
    _job(pipeline, "too-slow", "sleep 30", timeout_secs=0.5)

    failed = hetuflow("run", "fails-with-7", "--wait")
    assert failed.returncode == 7, failed.stderr
    assert f"failed on {agent} after 1 attempt(s), exit status 7" in failed.stderr
    assert hetuflow("run", "default/succeeds", "--wait").returncode == 0
    assert hetuflow("run", "too-slow", "--wait").returncode == 124


def test_run_follow_prints_the_output_as_it_runs(hetuflow: Hetuflow, pipeline: Pipeline, agent: str) -> None:
    _job(
        pipeline,
        "talks",
        'echo "start $HETUFLOW_PARAMS"; sleep 0.5; echo to-stderr >&2; sleep 0.5; echo done',
    )
    result = hetuflow("run", "talks", "-p", "who=world", "-p", "n=3", "--follow")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['start {"n":3,"who":"world"}', "done"]
    assert "to-stderr" in result.stderr

    task_id = hetuflow.ok("run", "talks").strip()
    assert hetuflow.ok("logs", task_id, "-f").splitlines() == ["start {}", "done"]
    assert hetuflow.ok("logs", task_id).splitlines() == ["start {}", "done"]
    tasks = json.loads(hetuflow.ok("tasks", "ls", "--job", "talks", "-o", "json"))
    assert {task["id"] for task in tasks} >= {task_id}
    assert all(task["status"] == "succeeded" for task in tasks)


def test_listings_and_daily_verbs(hetuflow: Hetuflow, pipeline: Pipeline, agent: str) -> None:
    job_id = _job(pipeline, "listed", "true")
    schedule = {"job_id": job_id, "kind": "event", "event_name": "cli-ping"}
    schedule_id = pipeline.call("POST", "/schedules", json=schedule, expect=201)["id"]

    table = hetuflow.ok("jobs", "ls", "-n", "default").splitlines()
    assert table[0].split() == ["ID", "NAMESPACE", "NAME", "STATUS", "COMMAND", "UPDATED"]
    assert any(line.split()[:3] == [job_id, "default", "listed"] for line in table[1:])
    assert json.loads(hetuflow.ok("jobs", "show", "listed", "-o", "json"))["id"] == job_id
    hetuflow.ok("jobs", "disable", "listed")
    assert json.loads(hetuflow.ok("jobs", "show", job_id, "-o", "json"))["status"] == "disabled"
    hetuflow.ok("jobs", "enable", "listed")

    agents = json.loads(hetuflow.ok("agents", "ls", "-o", "json"))
    assert [a["status"] for a in agents if a["id"] == agent] == ["online"]
    schedules = json.loads(hetuflow.ok("schedules", "ls", "--job", "listed", "-o", "json"))
    assert [s["id"] for s in schedules] == [schedule_id]

    sent = hetuflow("events", "send", "cli-ping", '{"from": "cli"}')
    assert sent.returncode == 0, sent.stderr
    (task_id,) = sent.stdout.split()
    slots_or_tasks = json.loads(hetuflow.ok("tasks", "show", task_id, "-o", "json"))
    assert slots_or_tasks["parameters"] == {"from": "cli"}

    steps = [{"name": "only", "job_id": job_id}]
    pipeline.call("POST", "/flows", json={"name": "cli-flow", "steps": steps}, expect=201)
    assert "cli-flow" in hetuflow.ok("flows", "ls")
    run_id = hetuflow.ok("flows", "run", "cli-flow").strip()
    assert len(run_id) == 36
    # A run no agent can take stays pending: cancel it, then retry it.
    stuck = pipeline.create_job(labels={"cli": "nobody"}, script="true")
    stuck_steps = [{"name": "only", "job_id": stuck}]
    pipeline.call("POST", "/flows", json={"name": "cli-stuck", "steps": stuck_steps}, expect=201)
    stuck_run = hetuflow.ok("flows", "run", "cli-stuck").strip()
    assert hetuflow.ok("flows", "cancel", "cli-stuck", stuck_run).split() == [stuck_run, "cancelled"]
    assert hetuflow.ok("flows", "retry", "cli-stuck", stuck_run).split() == [stuck_run, "running"]
    hetuflow.ok("flows", "cancel", "cli-stuck", stuck_run)
    # Runs latest first, and one run found by its id alone.
    later_run = hetuflow.ok("flows", "run", "cli-stuck").strip()
    runs = json.loads(hetuflow.ok("flows", "runs", "cli-stuck", "-o", "json"))
    assert [run["id"] for run in runs] == [later_run, stuck_run]
    assert later_run in hetuflow.ok("flows", "runs", "cli-stuck", "--limit", "1")
    shown = json.loads(hetuflow.ok("flows", "run-show", stuck_run, "-o", "json"))
    assert (shown["id"], shown["status"], [step["name"] for step in shown["steps"]]) == (
        stuck_run,
        "cancelled",
        ["only"],
    )
    assert "cancelled" in hetuflow.ok("flows", "run-show", stuck_run)
    hetuflow.ok("flows", "cancel", "cli-stuck", later_run)

    token = hetuflow.ok("tokens", "create", "cli-reader", "--scope", "read").strip()
    listed = json.loads(hetuflow.ok("tokens", "ls", "-o", "json"))
    jti = next(t["jti"] for t in listed if t["name"] == "cli-reader")
    assert token not in json.dumps(listed)
    hetuflow.ok("tokens", "revoke", jti)


def test_cron_on_a_dst_day_uses_the_server_preview_and_says_what_happens(hetuflow: Hetuflow) -> None:
    out = hetuflow.ok(
        "cron", "30 2 * * *", "--tz", "Europe/Berlin", "--from", "2026-03-28T12:00:00+01:00", "--count", "2"
    ).splitlines()
    assert out == [
        "at 02:30 every day, Europe/Berlin; "
        "on the spring-forward day (Sun 29 Mar 2026) at 03:00 CEST (02:30 does not exist that day); "
        "on the fall-back day (Sun 25 Oct 2026) once, at the first 02:30 (CEST)",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    wildcard = json.loads(
        hetuflow.ok(
            "cron", "*/30 2 * * *", "--tz", "Europe/Berlin", "--from", "2026-10-24T12:00:00Z", "-o", "json"
        )
    )
    assert wildcard["description"] == "at 02:00 and 02:30 every day, Europe/Berlin"
    assert "in both passes of 02:00-03:00 (CEST, then CET)" in wildcard["dst"][-1]


def test_errors_are_one_line_and_usage_errors_exit_2(hetuflow: Hetuflow, pipeline: Pipeline) -> None:
    def one_line(result: object, code: int, text: str) -> None:
        assert result.returncode == code, result.stderr  # type: ignore[attr-defined]
        assert result.stderr.count("\n") == 1, result.stderr  # type: ignore[attr-defined]
        assert text in result.stderr, result.stderr  # type: ignore[attr-defined]

    nobody = f"http://127.0.0.1:{free_port()}"
    one_line(hetuflow("jobs", "ls", server=nobody), 1, f"hetuflow: cannot reach the server at {nobody}")
    one_line(hetuflow("jobs", "ls", token="not-a-token"), 1, "hetuflow: 401 not authenticated")
    reader = hetuflow.ok("tokens", "create", "cli-errors-reader", "--scope", "read").strip()
    _job(pipeline, "guarded", "true")
    one_line(hetuflow("jobs", "delete", "guarded", token=reader), 1, "hetuflow: 403 forbidden")
    one_line(
        hetuflow("cron", "61 * * * *"),
        1,
        "hetuflow: 422 invalid: $.cron_expression: field 'minute' value 61 out of range 0-59",
    )
    one_line(hetuflow("jobs", "show", "no-such-job"), 1, "hetuflow: no job named 'no-such-job'")
    one_line(hetuflow("run"), 2, "hetuflow: Missing argument 'JOB'")
    one_line(hetuflow("tasks", "ls", "--status", "nope"), 2, "hetuflow: Invalid value for '--status'")
    one_line(hetuflow("run", "guarded", "-p", "novalue"), 2, "hetuflow: -p 'novalue': expected key=value")


def test_login_stores_server_and_token_readable_by_the_owner_only(
    hetuflow: Hetuflow, pipeline: Pipeline, tmp_path: Path
) -> None:
    anonymous = Hetuflow(pipeline.server.url, None, tmp_path)
    assert anonymous("jobs", "ls").returncode == 1
    logged_in = anonymous("login", "--token", pipeline.server.admin_token)
    assert logged_in.returncode == 0, logged_in.stderr
    stored = tmp_path / "hetuflow" / "credentials.toml"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(stored.parent).st_mode) == 0o700
    assert anonymous.ok("jobs", "ls", "-o", "json").startswith("[")
    anonymous.ok("logout")
    assert not stored.exists()
    refused = anonymous("login", "--token", "not-a-token")
    assert refused.returncode == 1
    assert not stored.exists()


def test_agents_shutdown_drains_the_agent_and_its_process_exits_0(
    hetuflow: Hetuflow, pipeline: Pipeline, tmp_path: Path
) -> None:
    pool = AgentPool(pipeline, tmp_path, "user-cli-shutdown")
    try:
        doomed = pool.start("user-cli-doomed")
        answer = hetuflow("agents", "shutdown", doomed.agent_id)
        assert answer.returncode == 0, answer.stderr
        assert answer.stderr.strip() == f"agent {doomed.agent_id}: draining"
        assert doomed.process.wait(timeout=30) == 0, doomed.log()
    finally:
        pool.stop_all()
    gone = hetuflow("agents", "shutdown", doomed.agent_id)
    assert gone.returncode == 1
    assert "not connected" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
