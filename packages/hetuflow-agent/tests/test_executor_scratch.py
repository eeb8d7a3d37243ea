"""Recycled task directories: every attempt still starts in an empty directory holding only its script.

Real files in a temporary directory, and real processes through the process manager.
"""

from __future__ import annotations

import os
from pathlib import Path

from process_harness import open_manager, scheduled

from hetuflow_agent.executor.scratch import SPARE_PREFIX, ScratchDirs
from hetuflow_core.enums import CommandKind, InstanceStatus


def spares(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(SPARE_PREFIX))


def test_a_directory_left_as_found_is_recycled_with_its_script_overwritten(tmp_path: Path) -> None:
    scratch = ScratchDirs(tmp_path, keep=4)
    first = tmp_path / "first"
    scratch.make(first, "script.sh")
    scratch.write_script(str(first / "script.sh"), b"echo a much longer first script\n")
    scratch.release(str(first), "script.sh", "first")
    assert not first.exists()
    assert spares(tmp_path) == [SPARE_PREFIX + "first"]

    second = tmp_path / "second"
    scratch.make(second, "script.sh")
    scratch.write_script(str(second / "script.sh"), b"echo 2\n")
    assert spares(tmp_path) == []
    assert os.listdir(second) == ["script.sh"]
    assert (second / "script.sh").read_bytes() == b"echo 2\n"


def test_a_spare_holding_another_script_is_emptied_first(tmp_path: Path) -> None:
    scratch = ScratchDirs(tmp_path, keep=4)
    first = tmp_path / "first"
    scratch.make(first, "script.sh")
    scratch.write_script(str(first / "script.sh"), b"true\n")
    scratch.release(str(first), "script.sh", "first")
    second = tmp_path / "second"
    scratch.make(second, "script.py")
    assert os.listdir(second) == []


def test_what_a_task_left_behind_is_deleted_not_recycled(tmp_path: Path) -> None:
    scratch = ScratchDirs(tmp_path, keep=4)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    cases = {
        "extra-file": lambda d: (d / "result.csv").write_text("x"),
        "symlinked-script": lambda d: ((d / "script.sh").unlink(), (d / "script.sh").symlink_to(outside)),
        "hardlinked-script": lambda d: os.link(d / "script.sh", tmp_path / "kept-by-the-task"),
        "opened-directory": lambda d: d.chmod(0o755),
        "opened-script": lambda d: (d / "script.sh").chmod(0o644),
    }
    for name, leave in cases.items():
        task_dir = tmp_path / name
        scratch.make(task_dir, "script.sh")
        scratch.write_script(str(task_dir / "script.sh"), b"true\n")
        leave(task_dir)
        scratch.release(str(task_dir), "script.sh", name)
        assert not task_dir.exists(), name
    assert spares(tmp_path) == []
    assert outside.read_text() == "precious"


def test_a_directory_a_task_locked_is_not_recycled(tmp_path: Path) -> None:
    scratch = ScratchDirs(tmp_path, keep=4)
    task_dir = tmp_path / "locked"
    scratch.make(task_dir, None)
    task_dir.chmod(0o500)
    try:
        scratch.release(str(task_dir), None, "locked")
        assert spares(tmp_path) == []
    finally:
        if task_dir.exists():  # without root the agent could not delete it either
            task_dir.chmod(0o700)


def test_spares_are_bounded_and_cleared(tmp_path: Path) -> None:
    scratch = ScratchDirs(tmp_path, keep=2)
    for name in ("a", "b", "c"):
        scratch.make(tmp_path / name, None)
    for name in ("a", "b", "c"):
        scratch.release(str(tmp_path / name), None, name)
    assert len(spares(tmp_path)) == 2
    scratch.clear()
    assert list(tmp_path.iterdir()) == []


async def test_consecutive_attempts_each_start_in_a_clean_directory(tmp_path: Path) -> None:
    litter = scheduled(script="ls -A; echo litter > junk.txt")
    long = scheduled(script="ls -A; echo first\n" + "# padding\n" * 200)
    short = scheduled(script="ls -A; echo 2")
    python = scheduled(CommandKind.PYTHON, script="import os; print(sorted(os.listdir()))")
    async with open_manager(tmp_path, capacity=1) as (manager, reports):
        outputs = []
        for task in (litter, long, short, python):
            final = await reports.run(manager, task)
            assert final.status is InstanceStatus.SUCCEEDED, final.error
            outputs.append(reports.output(task.instance_id).decode())
    assert outputs == ["script.sh\n", "script.sh\nfirst\n", "script.sh\n2\n", "['script.py']\n"]
    assert [p.name for p in (tmp_path / "tasks").iterdir() if p.is_dir()] == []  # close cleared the spares
