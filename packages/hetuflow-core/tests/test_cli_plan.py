"""The plan of ``hetuflow apply``, without a server: what is created, updated, deleted or left as it is,
how schedules without names are matched, what ``--prune`` may delete, and that exported objects plan to no
change (the round trip)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
import yaml

from hetuflow_core.cli._desired import Desired, desired_from
from hetuflow_core.cli._export import export_data, to_toml, to_yaml
from hetuflow_core.cli._files import LoadedFile, Source, SpecError
from hetuflow_core.cli._plan import Current, Plan, field_changes, make_plan
from hetuflow_core.cli._spec import ApplyFile, config_problems, mark
from hetuflow_core.flow import Flow
from hetuflow_core.job import Job, JobConfig
from hetuflow_core.schedule import Schedule

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job(name: str, namespace: str = "default", *, description: str = "", **config: Any) -> Job:
    config = {"command": "bash", "script": "true", **config}
    return msgspec.convert(
        {"id": str(uuid4()), "namespace": namespace, "name": name, "description": description,
         "status": "enabled", "config": config, "created_by": None, "created_at": NOW, "updated_by": None,
         "updated_at": NOW},
        Job,
    )  # fmt: skip


def schedule(owner: Job, **fields: Any) -> Schedule:
    base = {"id": str(uuid4()), "job_id": str(owner.id), "kind": "cron", "cron_expression": None,
            "timezone": "UTC", "interval_secs": None, "start_time": None, "end_time": None, "max_count": None,
            "event_name": None, "parameters": {}, "misfire_policy": "run_once", "misfire_grace_secs": 60.0,
            "misfire_max_runs": 100, "start_deadline_secs": None, "status": "enabled",
            "generated_until": None, "fire_count": 0,
            "created_at": NOW, "updated_at": NOW}  # fmt: skip
    return msgspec.convert({**base, **fields}, Schedule)


def flow(name: str, steps: list[tuple[str, Job, list[str]]], description: str = "") -> Flow:
    return msgspec.convert(
        {"id": str(uuid4()), "name": name, "description": description, "status": "enabled",
         "steps": [{"name": n, "job_id": str(j.id), "depends_on": d} for n, j, d in steps],
         "created_at": NOW, "updated_at": NOW},
        Flow,
    )  # fmt: skip


def desired(data: dict[str, Any], namespace: str | None = None) -> Desired:
    loaded = LoadedFile(Source(Path("jobs.toml"), {}), msgspec.convert(data, ApplyFile))
    return desired_from([loaded], namespace)


def plan(data: dict[str, Any], current: Current, *, prune: bool = False) -> Plan:
    return make_plan(desired(data), current, prune=prune)


def summary(result: Plan) -> list[str]:
    return [f"{change.action} {change.label}" for change in result.changes]


BASH = {"command": "bash", "script": "true"}


def test_everything_new_is_created_jobs_then_schedules_then_flows() -> None:
    data = {
        "flows": [{"name": "f", "steps": [{"name": "s", "job": "a"}]}],
        "jobs": [{"name": "a", "config": BASH, "schedules": [{"kind": "interval", "interval_secs": 60}]}],
    }
    result = plan(data, Current([], [], []))
    assert summary(result) == [
        "create job default/a",
        "create schedule of job default/a: interval 60s",
        "create flow f",
    ]
    assert result.changes[0].job_create is not None
    assert result.changes[0].job_create.description == mark("")


def test_a_matching_server_is_unchanged_and_omitted_fields_are_not_compared() -> None:
    a = job("a", description=mark("hello"))
    b = job("b")  # hand-made: no mark, still matched by name
    current = Current([a, b], [schedule(a, kind="interval", interval_secs=60)], [flow("f", [("s", a, [])])])
    data = {
        "jobs": [
            {
                "name": "a",
                "description": "hello",
                "config": BASH,
                "schedules": [{"kind": "interval", "interval_secs": 60}],
            },
            {"name": "b", "config": BASH},
        ],
        "flows": [{"name": "f", "steps": [{"name": "s", "job": "a"}]}],
    }
    result = plan(data, current)
    assert result.changes == []
    assert len(result.unchanged) == 4


def test_an_update_lists_the_changed_fields_and_keeps_the_mark() -> None:
    a = job("a", description=mark("old"), env={"TOKEN": "s3cret"})
    data = {"jobs": [{"name": "a", "description": "new", "status": "disabled",
                      "config": {**BASH, "timeout_secs": 5, "env": {"TOKEN": "other"}}}]}  # fmt: skip
    (change,) = plan(data, Current([a], [], [])).changes
    assert change.action == "update"
    assert change.details == (
        'description: "old" → "new"',
        'status: "enabled" → "disabled"',
        "config.env.TOKEN: changed (value hidden)",
        "config.timeout_secs: null → 5.0",
    )
    assert change.job_update is not None
    assert change.job_update.description == mark("new")


def test_secret_env_values_are_compared_as_the_server_shows_them() -> None:
    # The server shows a secret value as ***: the file's own value plans to no change ...
    stored = job("a", env={"TOKEN": "***", "REGION": "eu"}, secret_env=["TOKEN"])
    config = {**BASH, "env": {"TOKEN": "s3cret", "REGION": "eu"}, "secret_env": ["TOKEN"]}
    assert plan({"jobs": [{"name": "a", "config": config}]}, Current([stored], [], [])).changes == []
    # ... and any other change sends the file's value along, never the mask.
    changed = {**config, "env": {"TOKEN": "s3cret", "REGION": "us"}}
    (change,) = plan({"jobs": [{"name": "a", "config": changed}]}, Current([stored], [], [])).changes
    assert change.details == ("config.env.REGION: changed (value hidden)",)
    assert change.job_update is not None
    assert isinstance(change.job_update.config, JobConfig)
    assert change.job_update.config.env == {"TOKEN": "s3cret", "REGION": "us"}


def test_a_secret_name_must_be_an_env_key() -> None:
    config = msgspec.convert({**BASH, "env": {"A": "1"}, "secret_env": ["A", "B"]}, JobConfig)
    assert config_problems(config) == [("secret_env[1]", "'B' is not a key of env")]
    assert config.redacted().env == {"A": "***"}
    assert msgspec.convert(BASH, JobConfig).redacted() == msgspec.convert(BASH, JobConfig)


def test_schedules_match_identical_first_then_by_kind() -> None:
    a = job("a", description=mark(""))
    first = schedule(a, kind="cron", cron_expression="0 1 * * *")
    second = schedule(a, kind="cron", cron_expression="0 2 * * *")
    event = schedule(a, kind="event", event_name="go")
    current = Current([a], [first, second, event], [])

    def wanted(*schedules: dict[str, Any]) -> dict[str, Any]:
        return {"jobs": [{"name": "a", "config": BASH, "schedules": list(schedules)}]}

    edited = plan(wanted({"kind": "cron", "cron_expression": "0 1 * * *"},
                         {"kind": "cron", "cron_expression": "0 3 * * *"},
                         {"kind": "event", "event_name": "go"}), current)  # fmt: skip
    (update,) = edited.changes
    assert (update.action, update.target) == ("update", second.id)
    assert update.details == ('cron_expression: "0 2 * * *" → "0 3 * * *"',)

    removed_first = plan(
        wanted({"kind": "cron", "cron_expression": "0 2 * * *"}, {"kind": "event", "event_name": "go"}),
        current,
    )
    assert [(c.action, c.target) for c in removed_first.changes] == [("delete", first.id)]

    kind_changed = plan(wanted({"kind": "interval", "interval_secs": 60}), current)
    assert sorted(c.action for c in kind_changed.changes) == ["create", "delete", "delete", "delete"]
    assert plan({"jobs": [{"name": "a", "config": BASH}]}, current).changes == []  # schedules not declared


def test_prune_deletes_only_managed_objects_of_the_applied_namespaces() -> None:
    managed, hand_made = job("managed", description=mark("")), job("hand-made")
    elsewhere = job("managed", "other", description=mark(""))
    kept = job("kept", description=mark(""))
    managed_flow = flow("old-flow", [("s", kept, [])], mark("", "default"))
    current = Current(
        [managed, hand_made, elsewhere, kept], [], [managed_flow, flow("mine", [("s", kept, [])])]
    )
    data = {"jobs": [{"name": "kept", "config": BASH}]}

    without = plan(data, current)
    assert without.changes == []
    assert without.left_alone == ["job default/managed", "flow old-flow"]
    pruned = plan(data, current, prune=True)
    # A flow goes before the jobs it may name.
    assert summary(pruned) == ["delete flow old-flow", "delete job default/managed"]


def test_flow_steps_must_name_known_jobs() -> None:
    with pytest.raises(SpecError, match=r"steps\[0\]\.job: no job default/ghost"):
        plan({"flows": [{"name": "f", "steps": [{"name": "s", "job": "ghost"}]}]}, Current([], [], []))
    doomed = job("doomed", description=mark(""))
    with pytest.raises(SpecError, match="deleted by --prune"):
        plan(
            {"flows": [{"name": "f", "steps": [{"name": "s", "job": "doomed"}]}]},
            Current([doomed], [], []),
            prune=True,
        )


def test_a_job_or_flow_declared_twice_is_refused() -> None:
    one = LoadedFile(
        Source(Path("one.toml"), {}), msgspec.convert({"jobs": [{"name": "a", "config": BASH}]}, ApplyFile)
    )
    two = LoadedFile(
        Source(Path("two.toml"), {}), msgspec.convert({"jobs": [{"name": "a", "config": BASH}]}, ApplyFile)
    )
    with pytest.raises(SpecError, match=r"also declared in one\.toml"):
        desired_from([one, two], None)
    assert list(desired_from([one], "etl").jobs) == [("etl", "a")]


def test_field_changes_shortens_long_values() -> None:
    (line,) = field_changes("x" * 100, "y", "config.script")
    assert line.startswith('config.script: "xxxx')
    assert line.endswith('… → "y"')


@pytest.mark.parametrize(("write", "read"), [(to_toml, tomllib.loads), (to_yaml, yaml.safe_load)])
def test_exported_objects_plan_to_no_change(write: Any, read: Any) -> None:
    a = job("a", "etl", description="hand made\nsecond line", env={"A": "1"}, retry={"max_retries": 3},
            script="echo 'one'\necho \"two\"\n", target={"labels": {"zone/x": "y"}})  # fmt: skip
    b = job("b", "etl", description=mark("made by apply"))
    other = job("o", "shared")
    schedules = [
        schedule(
            a,
            kind="interval",
            interval_secs=60,
            start_time="2030-01-01T00:00:00+02:00",
            parameters={"n": [1, 2]},
        ),
        schedule(a, kind="cron", cron_expression="0 2 * * *", timezone="Europe/Berlin", status="disabled"),
        schedule(b, kind="once", start_time="2031-05-01T12:00:00Z", status="expired"),
    ]
    flows = [flow("f", [("one", a, []), ("two", other, ["one"])]), flow("g", [("x", other, [])])]
    current = Current([a, b, other], schedules, flows)
    skipped: list[str] = []
    data = read(write(export_data("etl", current, skipped)))
    assert skipped == []
    assert [f["name"] for f in data["flows"]] == ["f"]
    assert data["flows"][0]["steps"][1]["job"] == "shared/o"
    result = make_plan(desired(data), current, prune=True)
    assert result.changes == []
    assert len(result.unchanged) == 6


def test_uuid_type_of_targets() -> None:
    a = job("a", description=mark(""))
    (change,) = plan(
        {"jobs": [{"name": "a", "config": {**BASH, "priority": 5}}]}, Current([a], [], [])
    ).changes
    assert isinstance(change.target, UUID)
