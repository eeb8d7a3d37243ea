"""Every command kind run for real through the process manager.

bash, python and uv always run (uv comes with the test virtualenv). node, npx, cargo and java run when
their program is installed and are skipped with the reason otherwise; npx runs a package from a local
directory with ``--offline`` so no test needs the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from process_harness import TEST_ENV, open_manager, scheduled

from hetuflow_core.enums import CommandKind, InstanceStatus
from hetuflow_core.protocol import TaskInstanceUpdatedData

K = CommandKind


def needs(program: str) -> pytest.MarkDecorator:
    found = shutil.which(program, path=TEST_ENV["PATH"])
    return pytest.mark.skipif(found is None, reason=f"{program!r} is not installed on this machine")


async def run(tmp_path: Path, kind: K, **config: Any) -> tuple[TaskInstanceUpdatedData, str]:
    task = scheduled(kind, parameters={"n": 7}, **config)
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    return final, reports.output(task.instance_id).decode()


async def test_bash_script_gets_args_and_env(tmp_path: Path) -> None:
    final, out = await run(tmp_path, K.BASH, script='echo "$1 $2 $HETUFLOW_PARAMS"', args=["a b", "c"])
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == 'a b c {"n":7}\n'


async def test_bash_args_only(tmp_path: Path) -> None:
    final, out = await run(tmp_path, K.BASH, args=["-c", 'echo "$0:$1"', "zero", "one"])
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == "zero:one\n"


async def test_bash_script_larger_than_one_argument_may_be(tmp_path: Path) -> None:
    # Linux caps one argv string at 128 KiB; scripts go through a file, so this must work.
    script = "x=0\n" + "x=$((x+1))\n" * 20_000 + "echo $x\n"
    assert len(script) > 200_000
    final, out = await run(tmp_path, K.BASH, script=script)
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == "20000\n"


async def test_python_script_and_args(tmp_path: Path) -> None:
    script = (
        "import json, os, sys\nprint(json.dumps([sys.argv[1:], json.loads(os.environ['HETUFLOW_PARAMS'])]))"
    )
    final, out = await run(tmp_path, K.PYTHON, script=script, args=["--x", "1"])
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert json.loads(out) == [["--x", "1"], {"n": 7}]


async def test_python_args_only(tmp_path: Path) -> None:
    final, out = await run(tmp_path, K.PYTHON, args=["-c", "import sys; print(sys.argv[1:])", "q"])
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == "['q']\n"


async def test_uv_runs_a_script(tmp_path: Path) -> None:
    script = "import os, sys\nprint('uv', sys.argv[1:], os.environ['HETUFLOW_ATTEMPT'])"
    final, out = await run(tmp_path, K.UV, script=script, args=["p"], env={"UV_OFFLINE": "1"})
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == "uv ['p'] 1\n"


async def test_uv_run_args(tmp_path: Path) -> None:
    args = ["--offline", "python", "-c", "print('via uv run')"]
    final, out = await run(tmp_path, K.UV, args=args)
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == "via uv run\n"


@needs("node")
async def test_node_script_and_args(tmp_path: Path) -> None:
    script = "console.log(JSON.stringify([process.argv.slice(2), JSON.parse(process.env.HETUFLOW_PARAMS)]))"
    final, out = await run(tmp_path, K.NODE, script=script, args=["a"])
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert json.loads(out) == [["a"], {"n": 7}]
    final, out = await run(tmp_path / "again", K.NODE, args=["-e", "console.log(40 + 2)"])
    assert out == "42\n"


@needs("npx")
async def test_npx_runs_a_local_package_offline(tmp_path: Path) -> None:
    package = tmp_path / "hello"
    package.mkdir()
    (package / "package.json").write_text(
        json.dumps({"name": "hetuflow-hello", "version": "1.0.0", "bin": {"hetuflow-hello": "./hello.js"}})
    )
    (package / "hello.js").write_text(
        "#!/usr/bin/env node\nconsole.log('npx', process.argv.slice(2).join(','))\n"
    )
    (package / "hello.js").chmod(0o755)
    final, out = await run(tmp_path, K.NPX, args=["--offline", "./hello", "x", "y"], workdir=str(tmp_path))
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out.strip().endswith("npx x,y")


@needs("cargo")
async def test_cargo_builds_and_runs_a_crate(tmp_path: Path) -> None:
    crate = tmp_path / "crate"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text('[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2021"\n')
    (crate / "src" / "main.rs").write_text(
        'fn main() { println!("cargo {}", std::env::var("HETUFLOW_ATTEMPT").unwrap()); }\n'
    )
    final, out = await run(tmp_path, K.CARGO, args=["run", "--offline", "--quiet"], workdir=str(crate))
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == "cargo 1\n"


@needs("java")
async def test_java_runs_a_single_file_source_program(tmp_path: Path) -> None:
    script = (
        "public class Main { public static void main(String[] args) {"
        ' System.out.println("java " + String.join(",", args) + " " + System.getenv("HETUFLOW_ATTEMPT")); } }'
    )
    final, out = await run(tmp_path, K.JAVA, script=script, args=["a", "b"])
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert out == "java a,b 1\n"


@needs("java")
async def test_java_args_only(tmp_path: Path) -> None:
    final, _ = await run(tmp_path, K.JAVA, args=["-version"])
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert "version" in final.output
