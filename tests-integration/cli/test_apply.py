"""Jobs as code with the installed ``hetuflow`` executable against a real server: ``apply`` twice (the second
changes nothing), an edited schedule is one update, ``--prune`` removes only what apply made, an invalid
file changes nothing, ``export`` → ``apply`` changes nothing (TOML and YAML), and an edited flow is one update
(a managed flow no file declares is pruned).

One server for the module (``pipeline``); each test works in a namespace of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hetuflowcli import Hetuflow
from pipelinefixtures import Pipeline


@pytest.fixture(scope="module")
def hetuflow(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Hetuflow:
    return Hetuflow(pipeline.server.url, pipeline.server.admin_token, tmp_path_factory.mktemp("config"))


def _jobs(pipeline: Pipeline, namespace: str) -> dict[str, Any]:
    return {job["name"]: job for job in pipeline.call("GET", f"/jobs?namespace={namespace}")["items"]}


def _schedules(pipeline: Pipeline, job_id: str) -> list[dict[str, Any]]:
    return list(pipeline.call("GET", f"/schedules?job_id={job_id}")["items"])


NIGHTLY = """\
namespace = "twice"

[[jobs]]
name = "nightly"
description = "the nightly report"
[jobs.config]
command = "bash"
script = "echo report"
timeout_secs = 600

[[jobs.schedules]]
kind = "cron"
cron_expression = "30 2 * * *"
timezone = "Europe/Berlin"

[[jobs.schedules]]
kind = "event"
event_name = "report-requested"

[[jobs]]
name = "publish"
[jobs.config]
command = "bash"
script = "echo publish"

[[flows]]
name = "twice-report-then-publish"
[[flows.steps]]
name = "report"
job = "nightly"
[[flows.steps]]
name = "publish"
job = "publish"
depends_on = ["report"]
"""


def test_apply_twice_changes_nothing_the_second_time_and_an_edited_schedule_is_one_update(
    hetuflow: Hetuflow, pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(NIGHTLY)

    first = hetuflow.ok("apply", "-f", str(path))
    assert "+ create job twice/nightly" in first
    assert first.splitlines()[-1] == "5 changed (5 created, 0 updated, 0 deleted), 0 unchanged"
    second = hetuflow.ok("apply", "-f", str(path))
    assert second.splitlines() == ["0 changed (0 created, 0 updated, 0 deleted), 5 unchanged"]

    nightly = _jobs(pipeline, "twice")["nightly"]
    cron_before = next(s for s in _schedules(pipeline, nightly["id"]) if s["kind"] == "cron")
    path.write_text(NIGHTLY.replace('"30 2 * * *"', '"45 3 * * *"'))
    edited = hetuflow.ok("apply", "-f", str(path))
    assert '~ update schedule of job twice/nightly: cron "30 2 * * *" Europe/Berlin' in edited
    assert '    cron_expression: "30 2 * * *" → "45 3 * * *"' in edited
    assert edited.splitlines()[-1] == "1 changed (0 created, 1 updated, 0 deleted), 4 unchanged"
    cron_after = next(s for s in _schedules(pipeline, nightly["id"]) if s["kind"] == "cron")
    assert (cron_after["id"], cron_after["cron_expression"]) == (cron_before["id"], "45 3 * * *")
    assert hetuflow.ok("apply", "-f", str(path)).startswith("0 changed")


def test_prune_deletes_only_the_managed_job_that_no_file_declares(
    hetuflow: Hetuflow, pipeline: Pipeline, tmp_path: Path
) -> None:
    hand_made = {"name": "hand-made", "namespace": "prune", "config": {"command": "bash", "script": "true"}}
    pipeline.call("POST", "/jobs", json=hand_made, expect=201)
    job = '[[jobs]]\nname = "{}"\n[jobs.config]\ncommand = "bash"\nscript = "true"\n'
    both, one = tmp_path / "both.toml", tmp_path / "one.toml"
    both.write_text('namespace = "prune"\n' + job.format("keep") + job.format("drop"))
    one.write_text('namespace = "prune"\n' + job.format("keep"))
    hetuflow.ok("apply", "-f", str(both))

    kept = hetuflow("apply", "-f", str(one))
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines()[-1].startswith("0 changed")
    assert "left alone: job prune/drop" in kept.stderr
    assert set(_jobs(pipeline, "prune")) == {"hand-made", "keep", "drop"}

    dry = hetuflow.ok("apply", "-f", str(one), "--prune", "--dry-run")
    assert "- delete job prune/drop" in dry
    assert set(_jobs(pipeline, "prune")) == {"hand-made", "keep", "drop"}

    pruned = hetuflow.ok("apply", "-f", str(one), "--prune")
    assert pruned.splitlines() == [
        "- delete job prune/drop",
        "1 changed (0 created, 0 updated, 1 deleted), 1 unchanged",
    ]
    assert set(_jobs(pipeline, "prune")) == {"hand-made", "keep"}
    assert hetuflow.ok("apply", "-f", str(one), "--prune").startswith("0 changed")


def test_an_invalid_file_is_refused_with_file_line_and_field_before_anything_changes(
    hetuflow: Hetuflow, pipeline: Pipeline, tmp_path: Path
) -> None:
    bad_type = tmp_path / "bad.toml"
    bad_type.write_text(
        'namespace = "bad"\n'
        '[[jobs]]\nname = "fine"\n[jobs.config]\ncommand = "bash"\nscript = "true"\n'
        '[[jobs]]\nname = "broken"\n[jobs.config]\ncommand = "bash"\nscript = "true"\ntimeout_secs = -1\n'
    )
    result = hetuflow("apply", "-f", str(bad_type))
    assert result.returncode == 1
    assert f"hetuflow: {bad_type}:12: jobs[1].config.timeout_secs: Expected `float` > 0.0" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("hetuflow: nothing was changed")

    # The cron syntax is the server's to judge: it is checked through the preview before any change.
    bad_cron = tmp_path / "bad.yaml"
    bad_cron.write_text(
        "namespace: bad\n"
        "jobs:\n"
        "  - name: fine\n"
        "    config: {command: bash, script: 'true'}\n"
        "    schedules:\n"
        "      - kind: cron\n"
        "        cron_expression: '61 * * * *'\n"
    )
    result = hetuflow("apply", "-f", str(bad_cron))
    assert result.returncode == 1
    assert (
        f"{bad_cron}:7: jobs[0].schedules[0].cron_expression: field 'minute' value 61 out of range 0-59"
        in result.stderr
    )
    assert _jobs(pipeline, "bad") == {}


def test_export_then_apply_changes_nothing_in_toml_and_yaml(
    hetuflow: Hetuflow, pipeline: Pipeline, tmp_path: Path
) -> None:
    config = {
        "command": "bash",
        "script": "echo \"one\"\necho 'two'\n",
        "env": {"MODE": "full"},
        "retry": {"max_retries": 2, "base_secs": 5},
        "target": {"labels": {"zone/a": "x"}},
        "timeout_secs": 90,
    }
    body = {"name": "made-by-hand", "namespace": "trip", "status": "disabled", "config": config}
    job_id = pipeline.call("POST", "/jobs", json=body, expect=201)["id"]
    schedule = {
        "job_id": job_id,
        "kind": "interval",
        "interval_secs": 3600,
        "start_time": "2030-01-01T00:00:00+01:00",
        "parameters": {"depth": 2, "tags": ["a", "b"]},
        "misfire_policy": "run_once",
    }
    pipeline.call("POST", "/schedules", json=schedule, expect=201)
    other = {"name": "other", "namespace": "trip-other", "config": {"command": "bash", "script": "true"}}
    other_id = pipeline.call("POST", "/jobs", json=other, expect=201)["id"]
    steps = [
        {"name": "first", "job_id": job_id},
        {"name": "second", "job_id": other_id, "depends_on": ["first"], "parameters": {"n": 1}},
    ]
    pipeline.call("POST", "/flows", json={"name": "trip-flow", "steps": steps}, expect=201)

    for suffix in ("toml", "yaml"):
        exported = tmp_path / f"trip.{suffix}"
        hetuflow.ok("export", "-n", "trip", "-f", str(exported))
        again = hetuflow.ok("apply", "-f", str(exported))
        assert again.splitlines() == ["0 changed (0 created, 0 updated, 0 deleted), 3 unchanged"], suffix
    text = (tmp_path / "trip.toml").read_text()
    assert 'job = "trip-other/other"' in text
    assert 'status = "disabled"' in text
    assert json.loads(hetuflow.ok("schema"))["$defs"]["JobSpec"]["required"] == ["name", "config"]


FLOWING = """\
namespace = "flowing"

[[jobs]]
name = "work"
[jobs.config]
command = "bash"
script = "true"

[[flows]]
name = "flowing-flow"
[[flows.steps]]
name = "work"
job = "work"
[[flows.steps]]
name = "cleanup"
job = "work"
depends_on = ["work"]
"""


def test_an_edited_flow_is_one_update_and_prune_deletes_a_managed_flow(
    hetuflow: Hetuflow, pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "flowing.toml"
    path.write_text(FLOWING)
    hetuflow.ok("apply", "-f", str(path))
    flows = {flow["name"]: flow for flow in pipeline.call("GET", "/flows")["items"]}
    before = flows["flowing-flow"]

    path.write_text(FLOWING + 'trigger_rule = "all_done"\ntimeout_secs = 30\n')
    edited = hetuflow.ok("apply", "-f", str(path))
    assert "~ update flow flowing-flow" in edited
    assert edited.splitlines()[-1] == "1 changed (0 created, 1 updated, 0 deleted), 1 unchanged"
    after = pipeline.call("GET", f"/flows/{before['id']}")
    assert (after["steps"][1]["trigger_rule"], after["steps"][1]["timeout_secs"]) == ("all_done", 30)
    assert after["description"] == before["description"]  # still marked managed
    assert hetuflow.ok("apply", "-f", str(path)).startswith("0 changed")

    path.write_text(FLOWING.split("[[flows]]")[0])
    pruned = hetuflow.ok("apply", "-f", str(path), "--prune")
    assert "- delete flow flowing-flow" in pruned
    pipeline.call("GET", f"/flows/{before['id']}", expect=404)
