"""The process manager with real processes: reports, environment, directories, exits, stops, capacity."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from process_harness import TEST_ENV, Reports, open_manager, pid_alive, scheduled, wait_gone

from hetuflow_agent.process import CapacityExceeded, NotAccepting, ProcessManager, ProcessSettings
from hetuflow_agent.process.orphans import LEADERS_FILE, PID_FILE, LeaderTable
from hetuflow_core.enums import CommandKind, InstanceStatus, LogStream
from hetuflow_core.protocol import TaskInstanceUpdatedData, TaskLogChunkData

PY = CommandKind.PYTHON


async def test_reports_running_then_logs_then_one_final(tmp_path: Path) -> None:
    async with open_manager(tmp_path) as (manager, reports):
        task = scheduled(script="echo out; echo err >&2")
        final = await reports.run(manager, task)
    events = [e for e in reports.events if e.instance_id == task.instance_id]
    assert isinstance(events[0], TaskInstanceUpdatedData)
    assert events[0].status is InstanceStatus.RUNNING
    assert events[0].seq == 0
    assert events[0].at is not None
    assert events[-1] is final
    assert [e.status for e in reports.updates(task.instance_id)] == [
        InstanceStatus.RUNNING,
        InstanceStatus.SUCCEEDED,
    ]
    assert all(isinstance(e, TaskLogChunkData) for e in events[1:-1])
    assert final.seq == 1
    assert final.exit_code == 0
    assert final.signal is None
    assert final.error is None
    assert final.at is not None
    assert final.at >= events[0].at
    assert reports.output(task.instance_id) == b"out\n"
    assert reports.output(task.instance_id, LogStream.STDERR) == b"err\n"
    assert set(final.output.splitlines()) == {"out", "err"}
    assert final.metrics is not None
    assert final.metrics.duration_secs > 0
    assert final.metrics.peak_rss_bytes > 0


async def test_environment_carries_task_identity_params_and_job_env(tmp_path: Path) -> None:
    script = "import json, os\nprint(json.dumps({k: v for k, v in os.environ.items()}))"
    task = scheduled(
        PY,
        script=script,
        parameters={"day": "2025-01-31", "n": [1, 2]},
        attempt=3,
        env={"JOB_VAR": "job value", "HETUFLOW_TASK_ID": "spoofed"},
    )
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    env = json.loads(reports.output(task.instance_id))
    assert env["HETUFLOW_TASK_ID"] == str(task.task_id)
    assert env["HETUFLOW_INSTANCE_ID"] == str(task.instance_id)
    assert env["HETUFLOW_JOB_ID"] == str(task.job_id)
    assert env["HETUFLOW_ATTEMPT"] == "3"
    assert json.loads(env["HETUFLOW_PARAMS"]) == {"day": "2025-01-31", "n": [1, 2]}
    assert env["HETUFLOW_SCHEDULED_AT"].endswith("Z")
    scheduled_at = datetime.fromisoformat(env["HETUFLOW_SCHEDULED_AT"].replace("Z", "+00:00"))
    assert scheduled_at == task.scheduled_at.astimezone(UTC)
    assert env["JOB_VAR"] == "job value"
    assert env["PATH"] == TEST_ENV["PATH"]  # the agent's base environment is inherited


async def test_agent_settings_and_excluded_variables_never_reach_a_task(tmp_path: Path) -> None:
    base = {
        **TEST_ENV,
        "HETUFLOW_AGENT__TOKEN": "agent-secret",
        "HETUFLOW_AGENT__TOKEN_FILE": "/etc/hetuflow/agent.token",
        "CLOUD_SECRET_KEY": "cloud-secret",
        "CLOUD_REGION": "eu",
    }
    task = scheduled(PY, script="import json, os\nprint(json.dumps(dict(os.environ)))", env={"JOB_VAR": "j"})
    async with open_manager(tmp_path, base_env=base, task_env_exclude=["CLOUD_SECRET_*"]) as (
        manager,
        reports,
    ):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    env = json.loads(reports.output(task.instance_id))
    assert not [name for name in env if name.startswith("HETUFLOW_AGENT__")]
    assert "CLOUD_SECRET_KEY" not in env
    assert env["CLOUD_REGION"] == "eu"
    assert env["JOB_VAR"] == "j"
    assert b"secret" not in reports.output(task.instance_id)


async def test_task_dirs_and_scripts_are_private_whatever_the_umask(tmp_path: Path) -> None:
    script = 'stat -c %a "$PWD/.." "$PWD" "$PWD/script.sh"'
    previous = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        async with open_manager(tmp_path, capacity=1) as (manager, reports):
            first, second = scheduled(script=script), scheduled(script=script)
            await reports.run(manager, first)
            await reports.run(manager, second)  # in a recycled directory
    finally:
        os.umask(previous)
    for task in (first, second):
        assert reports.output(task.instance_id).split() == [b"700", b"700", b"600"]


async def test_a_task_dir_is_cleared_away_with_no_later_start_to_carry_it(tmp_path: Path) -> None:
    # Removals ride along with the next start when there is one; without one they still happen.
    task = scheduled(script="echo scratch > file.txt")
    async with open_manager(tmp_path) as (manager, reports):
        await reports.run(manager, task)
        task_dir = tmp_path / "tasks" / str(task.instance_id)
        for _ in range(500):
            if not task_dir.exists():
                break
            await asyncio.sleep(0.01)
        assert not task_dir.exists()


async def test_default_workdir_is_a_task_dir_removed_afterwards(tmp_path: Path) -> None:
    task = scheduled(script="pwd; echo scratch > file.txt")
    async with open_manager(tmp_path) as (manager, reports):
        await reports.run(manager, task)
        task_dir = tmp_path / "tasks" / str(task.instance_id)
        assert reports.output(task.instance_id).decode().strip() == str(task_dir)
    assert not task_dir.exists()  # close() waits for the cleanup


async def test_task_dir_is_kept_when_configured(tmp_path: Path) -> None:
    task = scheduled(script="echo scratch > file.txt")
    async with open_manager(tmp_path, keep_task_dirs=True) as (manager, reports):
        await reports.run(manager, task)
    assert (tmp_path / "tasks" / str(task.instance_id) / "file.txt").read_text() == "scratch\n"


async def test_job_workdir_is_used_and_relative_to_agent_workdir(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    absolute = scheduled(script="pwd", workdir=str(tmp_path / "project"))
    relative = scheduled(script="pwd", workdir="project")
    async with open_manager(tmp_path) as (manager, reports):
        await reports.run(manager, absolute)
        await reports.run(manager, relative)
    for task in (absolute, relative):
        assert reports.output(task.instance_id).decode().strip() == str(tmp_path / "project")


async def test_missing_workdir_is_a_failure_with_reason(tmp_path: Path) -> None:
    task = scheduled(script="true", workdir=str(tmp_path / "nope"))
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.FAILED
    assert final.error == f"workdir {str(tmp_path / 'nope')!r} does not exist or is not a directory"
    assert [u.status for u in reports.updates(task.instance_id)] == [InstanceStatus.FAILED]
    assert final.seq == 0


async def test_missing_executable_is_a_failure_with_reason(tmp_path: Path) -> None:
    task = scheduled(CommandKind.CARGO, args=["--version"], env={"PATH": str(tmp_path)})
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
        assert manager.free_slots == manager.capacity
    assert final.status is InstanceStatus.FAILED
    assert final.error == "executable 'cargo' not found on PATH"


async def test_unstartable_argv_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    task = scheduled(args=["-c", "echo a\x00b"])
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.FAILED
    assert final.error is not None
    assert final.error.startswith("cannot start")


async def test_nonzero_exit_is_failed_with_code(tmp_path: Path) -> None:
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, scheduled(script="echo bye; exit 7"))
    assert final.status is InstanceStatus.FAILED
    assert final.exit_code == 7
    assert final.signal is None
    assert final.error == "exited with code 7"
    assert final.output == "bye\n"


async def test_death_by_signal_is_failed_with_signal(tmp_path: Path) -> None:
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGUSR1)"
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, scheduled(PY, script=script))
    assert final.status is InstanceStatus.FAILED
    assert final.exit_code is None
    assert final.signal == signal.SIGUSR1
    assert final.error == "killed by signal SIGUSR1"


# A leader and a child that both ignore SIGTERM; the child prints its pid first.
STUBBORN = """
trap '' TERM
python3 -c 'import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(os.getpid(), flush=True)
time.sleep(60)' &
wait
"""


async def test_timeout_kills_the_whole_group_even_what_ignores_sigterm(tmp_path: Path) -> None:
    task = scheduled(script=STUBBORN, timeout_secs=0.5)
    async with open_manager(tmp_path, kill_grace_secs=0.3) as (manager, reports):
        final = await reports.run(manager, task)
    child_pid = int(reports.output(task.instance_id).split()[0])
    assert final.status is InstanceStatus.TIMEOUT
    assert final.error == "timed out after 0.5 s"
    assert final.signal == signal.SIGKILL  # the leader ignored SIGTERM too
    assert final.metrics is not None
    assert final.metrics.duration_secs >= 0.8  # timeout + grace: SIGTERM was tried first
    assert await wait_gone(child_pid)


async def test_children_ignoring_sigterm_die_with_the_leader(tmp_path: Path) -> None:
    # The leader obeys SIGTERM at once; its child ignores it and must not survive the attempt.
    script = STUBBORN.replace("trap '' TERM\n", "").replace("wait", "sleep 60")
    task = scheduled(script=script, timeout_secs=0.5)
    async with open_manager(tmp_path, kill_grace_secs=30) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.TIMEOUT
    assert final.signal == signal.SIGTERM
    assert final.metrics is not None
    assert final.metrics.duration_secs < 10  # nobody waited for the 30 s grace
    assert await wait_gone(int(reports.output(task.instance_id).split()[0]))


async def test_background_processes_do_not_outlive_the_task(tmp_path: Path) -> None:
    task = scheduled(script="sleep 60 & echo $!")
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.SUCCEEDED
    assert await wait_gone(int(reports.output(task.instance_id)))


async def test_memory_hog_is_killed_with_reason(tmp_path: Path) -> None:
    script = "import time\nhog = b'x' * (400 * 1024 * 1024)\ntime.sleep(30)"
    task = scheduled(PY, script=script, limits={"memory_mb": 100})
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.FAILED
    assert final.error is not None
    assert final.error.startswith("memory limit exceeded: the process tree used ")
    assert final.error.endswith("limit 100 MiB")
    assert final.signal == signal.SIGKILL
    assert final.metrics is not None
    assert final.metrics.peak_rss_bytes > 100 * 1024 * 1024


async def test_memory_limit_counts_the_whole_tree(tmp_path: Path) -> None:
    # Three children of 60 MB each: none is over 100 MB alone, together they are.
    child = "import time; b = b'x' * (60 * 1024 * 1024); time.sleep(30)"
    script = f'for i in 1 2 3; do python3 -c "{child}" & done; wait'
    task = scheduled(script=script, limits={"memory_mb": 100})
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.FAILED
    assert final.error is not None
    assert "memory limit exceeded" in final.error


async def test_cpu_limit_stops_a_busy_loop(tmp_path: Path) -> None:
    task = scheduled(PY, script="while True:\n    pass", limits={"cpu_secs": 1}, timeout_secs=20)
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.FAILED
    assert final.error is not None
    assert final.error.startswith("cpu limit exceeded")
    assert final.metrics is not None
    # The kernel enforces RLIMIT_CPU on its precise runtime clock while rusage's utime/stime are
    # tick-sampled; on a loaded machine they differ by a tenth of a second or more, so the bound is loose.
    assert final.metrics.cpu_secs >= 0.5


async def test_metrics_cover_memory_cpu_and_duration(tmp_path: Path) -> None:
    script = (
        "import time\n"
        "block = b'x' * (80 * 1024 * 1024)\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "time.sleep(0.3)\n"
    )
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, scheduled(PY, script=script))
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert final.metrics is not None
    assert final.metrics.peak_rss_bytes >= 80 * 1024 * 1024
    assert final.metrics.cpu_secs >= 0.3
    assert final.metrics.duration_secs >= 0.6


async def test_output_beyond_the_cap_is_dropped_and_the_process_completes(tmp_path: Path) -> None:
    # 2 MB is far more than a pipe holds: the writer only finishes if the agent keeps draining.
    script = (
        "import sys\n"
        "for i in range(2048):\n"
        "    sys.stdout.write('%04d' % i + 'x' * 1019 + '\\n')\n"
        "sys.stdout.flush()\n"
        "open('done', 'w').write('yes')\n"
    )
    task = scheduled(PY, script=script, limits={"max_output_bytes": 10_000})
    async with open_manager(tmp_path, keep_task_dirs=True) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.SUCCEEDED
    assert final.output_truncated is True
    marker = b"\n[hetuflow: output truncated after 10000 bytes]\n"
    logged = reports.output(task.instance_id)
    assert logged.endswith(marker)
    assert len(logged) == 10_000 + len(marker)
    assert logged.startswith(b"0000xxx")
    assert final.output.endswith(marker.decode())
    assert (tmp_path / "tasks" / str(task.instance_id) / "done").read_text() == "yes"


async def test_invalid_utf8_survives_as_bytes(tmp_path: Path) -> None:
    raw = b"ok \xff\xfe\x80 \xe2\x82 end\n"
    script = "import sys\nsys.stdout.buffer.write(" + repr(raw) + ")\nsys.stderr.buffer.write(b'\\xc3')"
    task = scheduled(PY, script=script)
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.SUCCEEDED
    assert reports.output(task.instance_id) == raw
    assert reports.output(task.instance_id, LogStream.STDERR) == b"\xc3"
    assert "\ufffd" in final.output
    assert final.output.startswith("ok ")


async def test_log_chunks_have_contiguous_seq_per_stream_and_reassemble_exactly(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "data = bytes(range(256)) * 1200\n"  # 300 KiB, every byte value
        "for i in range(0, len(data), 7000):\n"
        "    sys.stdout.buffer.write(data[i:i + 7000]); sys.stdout.flush()\n"
        "    sys.stderr.buffer.write(b'e%d;' % i); sys.stderr.flush()\n"
    )
    task = scheduled(PY, script=script)
    async with open_manager(tmp_path, log_chunk_bytes=16 * 1024) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.SUCCEEDED
    for stream in LogStream:
        chunks = reports.chunks(task.instance_id, stream)
        assert [c.seq for c in chunks] == list(range(len(chunks)))  # sent in order, from 0
        assert all(0 < len(c.content) <= 16 * 1024 for c in chunks)
    assert reports.output(task.instance_id) == bytes(range(256)) * 1200
    expected_err = b"".join(b"e%d;" % i for i in range(0, 256 * 1200, 7000))
    assert reports.output(task.instance_id, LogStream.STDERR) == expected_err


async def test_slow_output_is_sent_live_in_batches(tmp_path: Path) -> None:
    task = scheduled(script="echo first; sleep 0.5; echo second")
    async with open_manager(tmp_path) as (manager, reports):
        assert await manager.submit(task)
        await reports.until(lambda: bool(reports.chunks(task.instance_id, LogStream.STDOUT)))
        first = reports.chunks(task.instance_id, LogStream.STDOUT)[0]
        assert not reports.updates(task.instance_id)[-1].status.is_final  # still running
        final = await reports.final(task.instance_id)
    assert first.content == b"first\n"
    assert [c.content for c in reports.chunks(task.instance_id, LogStream.STDOUT)] == [
        b"first\n",
        b"second\n",
    ]
    assert final.status is InstanceStatus.SUCCEEDED


async def test_task_fires_at_its_fire_time(tmp_path: Path) -> None:
    task = scheduled(script="true", fire_in=0.3)
    async with open_manager(tmp_path) as (manager, reports):
        await manager.submit(task)
        [waiting] = manager.running()
        assert waiting.status is InstanceStatus.DISPATCHED
        assert waiting.started_at is None
        started = await reports.started(task.instance_id)
    assert started.at is not None
    assert started.at >= task.fire_at


async def test_a_task_due_later_has_its_directory_and_script_made_while_it_waits(tmp_path: Path) -> None:
    task = scheduled(script="echo prepared", fire_in=1.0)
    async with open_manager(tmp_path) as (manager, reports):
        await manager.submit(task)
        script = tmp_path / "tasks" / str(task.instance_id) / "script.sh"
        for _ in range(80):  # up to 0.8 s, well before the fire time
            if script.exists():
                break
            await asyncio.sleep(0.01)
        assert script.read_text() == "echo prepared"
        assert manager.running()[0].started_at is None  # made, not started
        started = await reports.started(task.instance_id)
        final = await reports.final(task.instance_id)
    assert started.at is not None
    assert started.at >= task.fire_at
    assert final.status is InstanceStatus.SUCCEEDED
    assert reports.output(task.instance_id) == b"prepared\n"


async def test_a_task_due_later_that_cannot_start_fails_at_its_fire_time(tmp_path: Path) -> None:
    task = scheduled(script="true", workdir=str(tmp_path / "nope"), fire_in=0.5)
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
        reported = datetime.now(UTC)
    assert reported >= task.fire_at  # found while waiting, reported when it was due to start
    assert final.status is InstanceStatus.FAILED
    assert final.error == f"workdir {str(tmp_path / 'nope')!r} does not exist or is not a directory"
    assert [u.status for u in reports.updates(task.instance_id)] == [InstanceStatus.FAILED]


async def test_running_lists_held_attempts(tmp_path: Path) -> None:
    running = scheduled(script="sleep 30")
    waiting = scheduled(script="true", fire_in=60)
    async with open_manager(tmp_path) as (manager, reports):
        await manager.submit(running)
        await manager.submit(waiting)
        await reports.started(running.instance_id)
        by_id = {r.instance_id: r for r in manager.running()}
        assert by_id[running.instance_id].status is InstanceStatus.RUNNING
        assert by_id[running.instance_id].started_at is not None
        assert by_id[running.instance_id].task_id == running.task_id
        assert by_id[waiting.instance_id].status is InstanceStatus.DISPATCHED


async def test_capacity_is_never_exceeded(tmp_path: Path) -> None:
    first, second, third = (scheduled(script="sleep 30") for _ in range(3))
    async with open_manager(tmp_path, capacity=2) as (manager, reports):
        assert manager.free_slots == 2
        assert await manager.submit(first)
        assert await manager.submit(second)
        assert manager.free_slots == 0
        with pytest.raises(CapacityExceeded, match=r"at capacity \(2 tasks\)"):
            await manager.submit(third)
        assert await manager.submit(first) is False  # a duplicate is not a capacity problem
        assert await manager.cancel(first.instance_id, "make room")
        await reports.final(first.instance_id)
        assert manager.free_slots == 1
        assert await manager.submit(third)
        assert manager.free_slots == 0


async def test_slot_is_free_when_the_final_report_arrives(tmp_path: Path) -> None:
    seen: list[int] = []
    reports = Reports()

    async def on_update(update: TaskInstanceUpdatedData) -> None:
        if update.status.is_final:
            seen.append(manager.free_slots)
        await reports.on_update(update)

    manager = ProcessManager(capacity=1, workdir=tmp_path, on_update=on_update, on_log=reports.on_log)
    try:
        await reports.run(manager, scheduled(script="true"))
    finally:
        await manager.close()
    assert seen == [1]


async def test_duplicate_dispatch_is_ignored_even_after_it_finished(tmp_path: Path) -> None:
    task = scheduled(script="echo once")
    async with open_manager(tmp_path) as (manager, reports):
        assert await manager.submit(task)
        assert await manager.submit(task) is False
        await reports.final(task.instance_id)
        assert await manager.submit(task) is False
        assert manager.knows(task.instance_id)
    assert [u.status for u in reports.updates(task.instance_id)] == [
        InstanceStatus.RUNNING,
        InstanceStatus.SUCCEEDED,
    ]
    assert reports.output(task.instance_id) == b"once\n"


async def test_cancel_of_a_running_process_stops_its_group(tmp_path: Path) -> None:
    task = scheduled(script="sleep 30 & echo $!; wait")
    async with open_manager(tmp_path) as (manager, reports):
        await manager.submit(task)
        await reports.until(lambda: bool(reports.output(task.instance_id)))
        assert await manager.cancel(task.instance_id, "cancelled by user admin")
        final = await reports.final(task.instance_id)
        assert await manager.cancel(task.instance_id) is False  # already over
    assert final.status is InstanceStatus.CANCELLED
    assert final.error == "cancelled by user admin"
    assert final.signal == signal.SIGTERM
    assert await wait_gone(int(reports.output(task.instance_id)))


async def test_cancel_of_a_waiting_task_means_it_never_starts(tmp_path: Path) -> None:
    task = scheduled(script="touch started", fire_in=60)
    async with open_manager(tmp_path, keep_task_dirs=True) as (manager, reports):
        await manager.submit(task)
        assert await manager.cancel(task.instance_id, "not needed")
        final = await reports.final(task.instance_id)
    assert final.status is InstanceStatus.CANCELLED
    assert final.error == "not needed"
    assert final.seq == 0
    assert [u.status for u in reports.updates(task.instance_id)] == [InstanceStatus.CANCELLED]
    assert not (tmp_path / "tasks" / str(task.instance_id) / "started").exists()


async def test_kill_escalates_a_cancel_in_its_grace_period(tmp_path: Path) -> None:
    task = scheduled(script="trap '' TERM; echo ready; sleep 30")
    async with open_manager(tmp_path, kill_grace_secs=60) as (manager, reports):
        await manager.submit(task)
        await reports.until(lambda: bool(reports.output(task.instance_id)))
        await manager.cancel(task.instance_id, "please stop")
        await asyncio.sleep(0.2)
        assert manager.running()  # SIGTERM is ignored, the 60 s grace runs
        assert await manager.kill(task.instance_id, "now")
        final = await reports.final(task.instance_id, within_secs=10)
    assert final.status is InstanceStatus.CANCELLED
    assert final.error == "please stop"  # the first request decides the outcome
    assert final.signal == signal.SIGKILL


async def test_unknown_instances_cannot_be_cancelled(tmp_path: Path) -> None:
    async with open_manager(tmp_path) as (manager, _):
        task = scheduled(script="true")
        assert await manager.cancel(task.instance_id) is False
        assert await manager.kill(task.instance_id) is False


async def test_drain_hands_back_waiting_work_and_lets_running_work_finish(tmp_path: Path) -> None:
    waiting = scheduled(script="true", fire_in=60)
    short = scheduled(script="sleep 0.3; echo finished")
    async with open_manager(tmp_path) as (manager, reports):
        await manager.submit(waiting)
        await manager.submit(short)
        await reports.started(short.instance_id)
        await manager.drain(10)
        assert manager.free_slots == 0
        assert not manager.accepting
        with pytest.raises(NotAccepting):
            await manager.submit(scheduled(script="true"))
    handed_back = await reports.final(waiting.instance_id)
    assert handed_back.status is InstanceStatus.LOST
    assert handed_back.error is not None
    assert "before it started" in handed_back.error
    finished = await reports.final(short.instance_id)
    assert finished.status is InstanceStatus.SUCCEEDED


async def test_drain_stops_what_outlasts_its_timeout(tmp_path: Path) -> None:
    task = scheduled(script="sleep 30")
    async with open_manager(tmp_path) as (manager, reports):
        await manager.submit(task)
        await reports.started(task.instance_id)
        await manager.drain(0.2)
        final = await reports.final(task.instance_id)
        assert manager.running() == []
    assert final.status is InstanceStatus.LOST
    assert final.error == "agent shut down before the task finished"


async def test_failing_callbacks_do_not_break_the_manager(tmp_path: Path) -> None:
    calls: list[TaskInstanceUpdatedData | TaskLogChunkData] = []
    final_seen = asyncio.Event()

    async def broken(report: TaskInstanceUpdatedData | TaskLogChunkData) -> None:
        calls.append(report)
        if isinstance(report, TaskInstanceUpdatedData) and report.status.is_final:
            final_seen.set()
        raise RuntimeError("connection layer bug")

    manager = ProcessManager(capacity=2, workdir=tmp_path, on_update=broken, on_log=broken, base_env=TEST_ENV)
    try:
        assert await manager.submit(scheduled(script="echo hi"))
        await asyncio.wait_for(final_seen.wait(), 30)
        assert manager.free_slots == 2
        assert await manager.submit(scheduled(script="echo again"))
    finally:
        await manager.close()
    first = [type(c).__name__ for c in calls[:3]]
    assert first == ["TaskInstanceUpdatedData", "TaskLogChunkData", "TaskInstanceUpdatedData"]


async def sleeper_in_own_group() -> asyncio.subprocess.Process:
    """A process standing in for a task group a crashed agent left behind."""
    return await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)


async def test_start_kills_groups_a_dead_predecessor_left_behind(tmp_path: Path) -> None:
    task_dir = tmp_path / "tasks" / "0195f0a2-0000-7000-8000-000000000000"
    task_dir.mkdir(parents=True)
    orphan = await sleeper_in_own_group()
    try:
        predecessor = LeaderTable(tmp_path / "tasks", slots=2)
        predecessor.record(1, orphan.pid, task_dir.name)
        predecessor.close()
        assert str(orphan.pid) in (tmp_path / "tasks" / LEADERS_FILE).read_text()
        reports = Reports()
        manager = ProcessManager(
            capacity=1, workdir=tmp_path, on_update=reports.on_update, on_log=reports.on_log
        )
        assert await manager.start() == [orphan.pid]
        await manager.close()
        assert await asyncio.wait_for(orphan.wait(), 5) == -signal.SIGKILL
        assert not task_dir.exists()
    finally:
        if orphan.returncode is None:
            orphan.kill()
            await orphan.wait()


async def test_a_start_bracketed_by_the_boot_clock_is_recognised_by_a_successor(tmp_path: Path) -> None:
    predecessor = LeaderTable(tmp_path / "tasks", slots=2)
    before = predecessor.now()
    if before is None:
        pytest.skip("starts are bracketed only where /proc gives start times")
    orphan = await sleeper_in_own_group()
    try:
        predecessor.record(0, orphan.pid, "bracketed", started_after=before)
        predecessor.close()
        assert await _killed_by_a_start(tmp_path) == [orphan.pid]
        assert await asyncio.wait_for(orphan.wait(), 5) == -signal.SIGKILL
    finally:
        if orphan.returncode is None:
            orphan.kill()
            await orphan.wait()


async def test_a_bracket_that_misses_the_start_leaves_the_process_alone(tmp_path: Path) -> None:
    stranger = await sleeper_in_own_group()
    try:
        table = LeaderTable(tmp_path / "tasks", slots=1)
        later = table.now()
        if later is None:
            pytest.skip("starts are bracketed only where /proc gives start times")
        # A bracket after the process started: the pid was reused by someone else.
        table.record(0, stranger.pid, "reused", started_after=later + 1000)
        table.close()
        assert await _killed_by_a_start(tmp_path) == []
        assert pid_alive(stranger.pid)
    finally:
        stranger.kill()
        await stranger.wait()


async def _killed_by_a_start(workdir: Path) -> list[int]:
    """What a new agent's manager in ``workdir`` kills when it starts (it is closed right after)."""
    reports = Reports()
    manager = ProcessManager(capacity=1, workdir=workdir, on_update=reports.on_update, on_log=reports.on_log)
    killed = await manager.start()
    await manager.close()
    return killed


async def test_start_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    task_dir = tmp_path / "tasks" / "stale"
    task_dir.mkdir(parents=True)
    stranger = await sleeper_in_own_group()
    try:
        (task_dir / PID_FILE).write_text(f"{stranger.pid} 12345.0\n")  # same pid, another start time
        assert await _killed_by_a_start(tmp_path) == []
        assert pid_alive(stranger.pid)
    finally:
        stranger.kill()
        await stranger.wait()


async def test_settings_outside_their_bounds_are_refused(tmp_path: Path) -> None:
    reports = Reports()
    with pytest.raises(ValueError, match=r"log_chunk_bytes"):
        ProcessManager(
            capacity=1,
            workdir=tmp_path,
            on_update=reports.on_update,
            on_log=reports.on_log,
            settings=ProcessSettings(log_chunk_bytes=2 * 1024 * 1024),  # above the protocol's chunk limit
        )
    with pytest.raises(ValueError, match="capacity"):
        ProcessManager(capacity=0, workdir=tmp_path, on_update=reports.on_update, on_log=reports.on_log)
