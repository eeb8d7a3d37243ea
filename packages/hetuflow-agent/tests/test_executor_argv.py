"""The executor's pure parts and launch preparation: argv per command kind, environment, capabilities."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from process_harness import scheduled

from hetuflow_agent.executor import (
    DEFAULT_EXECUTABLES,
    LaunchError,
    build_argv,
    build_env,
    check_runnable,
    detect_capabilities,
    prepare_launch,
    resolve_executable,
    rfc3339,
)
from hetuflow_core.enums import CommandKind
from hetuflow_core.job import JobConfig

K = CommandKind


@pytest.mark.parametrize(
    ("kind", "script", "args", "expected"),
    [
        (K.BASH, "echo hi", ["a", "b"], ["/x/bash", "/t/script", "a", "b"]),
        (K.BASH, None, ["-c", "echo $0", "n"], ["/x/bash", "-c", "echo $0", "n"]),
        (K.PYTHON, "print(1)", ["--flag"], ["/x/python3", "/t/script", "--flag"]),
        (K.PYTHON, None, ["-m", "http.server"], ["/x/python3", "-m", "http.server"]),
        (K.UV, "print(1)", ["a"], ["/x/uv", "run", "/t/script", "a"]),
        (K.UV, None, ["--with", "rich", "tool.py"], ["/x/uv", "run", "--with", "rich", "tool.py"]),
        (K.NODE, "console.log(1)", ["a"], ["/x/node", "/t/script", "a"]),
        (K.NODE, None, ["server.js"], ["/x/node", "server.js"]),
        (K.NPX, None, ["cowsay", "moo"], ["/x/npx", "--yes", "cowsay", "moo"]),
        (K.CARGO, None, ["run", "--release"], ["/x/cargo", "run", "--release"]),
        (K.JAVA, "class Main {}", ["x"], ["/x/java", "/t/script", "x"]),
        (K.JAVA, None, ["-jar", "app.jar"], ["/x/java", "-jar", "app.jar"]),
    ],
)
def test_argv_of_every_command_kind(
    kind: K, script: str | None, args: list[str], expected: list[str]
) -> None:
    config = JobConfig(command=kind, script=script, args=args)
    exe = "/x/" + DEFAULT_EXECUTABLES[kind]
    assert build_argv(config, exe, "/t/script" if script is not None else None) == expected


@pytest.mark.parametrize("kind", [K.NPX, K.CARGO])
def test_kinds_without_script_support_refuse_a_script(kind: K) -> None:
    config = JobConfig(command=kind, script="x", args=["a"])
    assert check_runnable(config) == (
        f"command {kind.value!r} does not take a script body; pass the command line in args"
    )
    with pytest.raises(ValueError, match="does not take a script"):
        build_argv(config, "/x/prog", "/t/s")


def test_nothing_to_run_is_refused() -> None:
    assert (
        check_runnable(JobConfig(command=K.BASH)) == "nothing to run: command 'bash' needs a script or args"
    )


def test_script_needs_its_path() -> None:
    with pytest.raises(ValueError, match="needs the path"):
        build_argv(JobConfig(command=K.BASH, script="true"), "/x/bash")


def test_environment_layers_base_job_and_task_variables() -> None:
    task = scheduled(
        parameters={"a": [1, "ü"]},
        attempt=2,
        args=["-c", "true"],
        env={"PATH": "/job/bin", "HETUFLOW_ATTEMPT": "99", "ONLY_JOB": "1"},
    )
    env = build_env({"PATH": "/agent/bin", "ONLY_AGENT": "1"}, task)
    assert env["PATH"] == "/job/bin"
    assert env["ONLY_AGENT"] == "1"
    assert env["ONLY_JOB"] == "1"
    assert env["HETUFLOW_ATTEMPT"] == "2"
    assert env["HETUFLOW_TASK_ID"] == str(task.task_id)
    assert env["HETUFLOW_INSTANCE_ID"] == str(task.instance_id)
    assert env["HETUFLOW_JOB_ID"] == str(task.job_id)
    assert json.loads(env["HETUFLOW_PARAMS"]) == {"a": [1, "ü"]}
    assert env["HETUFLOW_SCHEDULED_AT"] == rfc3339(task.scheduled_at)


def test_rfc3339_is_utc_with_z() -> None:
    moment = datetime(2025, 3, 30, 3, 30, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2025-03-30T01:30:00.250000Z"
    assert rfc3339(datetime(2025, 1, 1)) == "2025-01-01T00:00:00Z"  # naive counts as UTC
    assert datetime.fromisoformat(rfc3339(moment).replace("Z", "+00:00")) == moment.astimezone(UTC)


def fake_program(directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_capabilities_are_the_kinds_whose_program_is_found(tmp_path: Path) -> None:
    fake_program(tmp_path, "bash")
    fake_program(tmp_path, "my-python")
    (tmp_path / "node").write_text("not executable")
    executables = {K.PYTHON: "my-python", K.JAVA: str(fake_program(tmp_path, "java17"))}
    assert detect_capabilities(executables, path=str(tmp_path)) == [K.BASH, K.PYTHON, K.JAVA]
    assert detect_capabilities({}, path=str(tmp_path / "empty")) == []


def test_resolve_gives_an_absolute_path_or_none(tmp_path: Path) -> None:
    program = fake_program(tmp_path, "tool")
    assert resolve_executable("tool", str(tmp_path)) == str(program)
    assert resolve_executable("missing", str(tmp_path)) is None


def test_prepare_writes_the_script_into_the_task_dir(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_program(bin_dir, "node")
    task = scheduled(K.NODE, script="console.log('é')", args=["x"], env={"PATH": str(bin_dir)})
    launch = prepare_launch(task, executables=DEFAULT_EXECUTABLES, base_env={}, workdir=tmp_path)
    task_dir = tmp_path / "tasks" / str(task.instance_id)
    assert launch.task_dir == task_dir
    assert launch.cwd == task_dir
    assert launch.argv == [str(bin_dir / "node"), str(task_dir / "script.js"), "x"]
    assert (task_dir / "script.js").read_text(encoding="utf-8") == "console.log('é')"
    assert launch.env["HETUFLOW_INSTANCE_ID"] == str(task.instance_id)


def test_prepare_refuses_with_reasons(tmp_path: Path) -> None:
    base = {"PATH": os.defpath}
    cases = [
        (scheduled(K.CARGO, args=["b"], env={"PATH": str(tmp_path)}), "executable 'cargo' not found on PATH"),
        (scheduled(K.NPX, script="x", args=["a"]), "command 'npx' does not take a script body"),
        (
            scheduled(K.BASH, args=["-c", "true"], workdir="/does/not/exist"),
            "workdir '/does/not/exist' does not",
        ),
    ]
    for task, reason in cases:
        with pytest.raises(LaunchError) as caught:
            prepare_launch(task, executables=DEFAULT_EXECUTABLES, base_env=base, workdir=tmp_path)
        assert str(caught.value).startswith(reason)


def test_prepare_reports_an_unwritable_task_dir(tmp_path: Path) -> None:
    (tmp_path / "tasks").write_text("a file where the directory should be")
    task = scheduled(K.BASH, script="true")
    with pytest.raises(LaunchError, match="cannot prepare task directory"):
        prepare_launch(task, executables=DEFAULT_EXECUTABLES, base_env={"PATH": os.defpath}, workdir=tmp_path)
