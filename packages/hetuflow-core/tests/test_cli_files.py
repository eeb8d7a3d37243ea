"""Apply files: the format mirrors the API's request Structs, its JSON Schema in docs/ is current, and a bad
file is reported as FILE:LINE: FIELD: reason, for TOML and YAML alike, before any server is asked."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from hetuflow_core.cli._files import SpecError, load_file, toml_lines, yaml_lines
from hetuflow_core.cli._spec import (
    MANAGED_MARK,
    JobSpec,
    ScheduleSpec,
    file_schema,
    flow_problems,
    mark,
    unmark,
)
from hetuflow_core.job import JobCreate
from hetuflow_core.schedule import ScheduleCreate

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "docs" / "hetuflow-apply.schema.json"


def _types(struct: type[msgspec.Struct]) -> dict[str, object]:
    return {field.name: field.type for field in msgspec.structs.fields(struct)}


def test_the_format_mirrors_the_api_bodies() -> None:
    schedule, create = _types(ScheduleSpec), _types(ScheduleCreate)
    assert schedule.pop("status") == create.pop("status") | msgspec.UnsetType  # type: ignore[operator]
    # A file declares a schedule under the job it runs: the target is where it stands.
    create.pop("job_id")
    create.pop("flow_id")
    assert schedule == create
    job, job_create = _types(JobSpec), _types(JobCreate)
    assert job["config"] == job_create["config"]
    assert set(job) - set(job_create) == {"schedules"}


def test_the_schema_file_in_docs_is_current() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == file_schema(), "regenerate with `hetuflow schema`"


def test_mark_and_unmark() -> None:
    assert unmark(mark("nightly report")) == ("nightly report", True, None)
    assert unmark(mark("", "etl")) == ("", True, "etl")
    assert unmark("hand written") == ("hand written", False, None)
    assert unmark(f"text mentioning {MANAGED_MARK} midway") == (
        f"text mentioning {MANAGED_MARK} midway",
        False,
        None,
    )


def test_flow_problems() -> None:
    def flow(*steps: dict[str, object]) -> list[tuple[str, str]]:
        from hetuflow_core.cli._spec import FlowSpec

        return flow_problems(msgspec.convert({"name": "f", "steps": list(steps)}, FlowSpec))

    assert flow({"name": "a", "job": "j"}, {"name": "b", "job": "j", "depends_on": ["a"]}) == []
    assert flow({"name": "a", "job": "j"}, {"name": "a", "job": "j"}) == [
        ("steps[1].name", "duplicate step name 'a'")
    ]
    assert flow({"name": "a", "job": "j", "depends_on": ["z"]}) == [
        ("steps[0].depends_on[0]", "no step named 'z'")
    ]
    cycle = flow(
        {"name": "a", "job": "j", "depends_on": ["c"]},
        {"name": "b", "job": "j", "depends_on": ["a"]},
        {"name": "c", "job": "j", "depends_on": ["b"]},
        {"name": "d", "job": "j"},
    )
    assert cycle == [("steps[0].depends_on", "dependency cycle through ['a', 'b', 'c']")]


TOML = """\
namespace = "ns"  # a comment

[[jobs]]
name = "a"
[jobs.config]
command = "bash"
script = \"\"\"
name = "not a key"
\"\"\"
retry = { max_retries = 2 }

[[jobs.schedules]]
kind = "cron"

[[jobs]]
name = "b"
config.command = "bash"

[[flows]]
name = "f"
[[flows.steps]]
name = "s"
"""


def test_toml_lines() -> None:
    lines = toml_lines(TOML)
    assert lines[("namespace",)] == 1
    assert lines[("jobs", 0)] == 3
    assert lines[("jobs", 0, "config", "script")] == 7
    assert ("jobs", 0, "config", "name") not in lines  # inside the multi-line string
    assert lines[("jobs", 0, "config", "retry")] == 10
    assert lines[("jobs", 0, "schedules", 0, "kind")] == 13
    assert lines[("jobs", 1, "name")] == 16
    assert lines[("jobs", 1, "config", "command")] == 17
    assert lines[("flows", 0, "steps", 0, "name")] == 22


def test_yaml_lines() -> None:
    text = "jobs:\n  - name: a\n    config:\n      command: bash\n  - name: b\n"
    lines = yaml_lines(text)
    assert lines[("jobs", 1)] == 5
    assert lines[("jobs", 0, "config", "command")] == 4


def _problems(tmp_path: Path, name: str, text: str) -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_file(path)
    return [problem.removeprefix(f"{path}") for problem in caught.value.problems]


JOB = '[[jobs]]\nname = "{name}"\n[jobs.config]\ncommand = "{command}"\n'


def test_problems_name_the_line_and_field(tmp_path: Path) -> None:
    assert _problems(tmp_path, "a.toml", JOB.format(name="x", command="bash") + "timeout_secs = 0\n") == [
        ":5: jobs[0].config.timeout_secs: Expected `float` > 0.0"
    ]
    assert _problems(
        tmp_path, "b.toml", JOB.format(name="x", command="bash") + 'script = "x"\ncolour = 1\n'
    ) == [":6: jobs[0].config.colour: unknown field"]
    assert _problems(tmp_path, "c.toml", '[[jobs]]\nname = "x"\n') == [
        ":1: jobs[0]: Object missing required field `config`"
    ]
    two = JOB.format(name="x", command="npx") + JOB.format(name="x", command="bash") + 'script = "x"\n'
    two += '[[jobs.schedules]]\nkind = "interval"\ncron_expression = "* * * * *"\n'
    assert _problems(tmp_path, "d.toml", two) == [
        ":3: jobs[0].config.args: a npx job needs args",
        ":6: jobs[1].name: job 'x' is declared twice (also jobs[0])",
        ":10: jobs[1].schedules[0].interval_secs: required for interval schedules",
        ":12: jobs[1].schedules[0].cron_expression: only cron schedules take one, this one is interval",
    ]
    yaml_text = (
        "jobs:\n  - name: y\n    config: {command: bash, script: x}\n    schedules:\n      - kind: once\n"
    )
    assert _problems(tmp_path, "e.yaml", yaml_text) == [
        ":5: jobs[0].schedules[0].start_time: required for once schedules"
    ]
    assert _problems(tmp_path, "f.yaml", "jobs:\n  - name: [\n")[0].startswith(":3: not valid YAML")
    assert "not valid TOML" in _problems(tmp_path, "g.toml", "jobs = [\n")[0]
    assert _problems(tmp_path, "h.json", "{}") == [": unknown format; name the file *.toml, *.yaml or *.yml"]


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "namespace: etl\njobs:\n  - name: a\n    config: {command: bash, script: 'true', timeout_secs: 5}\n"
        "    schedules:\n      - {kind: once, start_time: 2030-01-01T00:00:00+01:00}\n"
        "flows:\n  - name: f\n    steps:\n      - {name: s, job: other/a}\n"
    )
    loaded = load_file(path).spec
    assert loaded.namespace == "etl"
    assert loaded.jobs[0].config.timeout_secs == 5.0
    assert loaded.jobs[0].schedules[0].start_time.utcoffset().total_seconds() == 3600  # type: ignore[index, union-attr]
    assert loaded.jobs[0].status is msgspec.UNSET
