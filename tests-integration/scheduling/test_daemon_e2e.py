"""Daemon schedules with a real server and real agent processes: a daemon whose process keeps exiting is
restarted again and again with growing delays, disabling it kills the running process and leaves no live
run, and when its agent is killed (``kill -9``) it is started again on another agent."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from pipelinefixtures import AgentPool, Pipeline, wait_for
from schedulingfixtures import create_schedule

LIVE = frozenset({"pending", "dispatched", "running", "waiting_retry"})
RESTART = {"backoff": "exponential", "base_secs": 1, "max_secs": 30, "jitter": 0}


def _runs(pipeline: Pipeline, schedule_id: str) -> list[dict[str, Any]]:
    """Every run (task) of the daemon schedule, first to last."""
    page = pipeline.call("GET", "/tasks", params={"schedule_id": schedule_id, "limit": 1000})
    return sorted(page["items"], key=lambda task: (task["scheduled_at"], task["id"]))


def _live(pipeline: Pipeline, schedule_id: str) -> list[dict[str, Any]]:
    return [task for task in _runs(pipeline, schedule_id) if task["status"] in LIVE]


def _running_pid(
    pipeline: Pipeline, schedule_id: str, pids: Path, *, run: int = 1
) -> tuple[dict[str, Any], int] | None:
    """Once run number ``run`` (or a later one) runs: that run and the pid its process wrote (one line per
    start)."""
    live = _live(pipeline, schedule_id)
    if len(live) != 1 or live[0]["status"] != "running" or not pids.exists():
        return None
    lines = pids.read_text().split()
    starts = len([task for task in _runs(pipeline, schedule_id) if task["instance_id"] is not None])
    return (live[0], int(lines[-1])) if len(lines) == starts >= run else None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_restarted_with_growing_delays_then_disabled(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start()
    pids = tmp_path / "pids"
    # Runs 1-3 exit (status 3) after a second; run 4 stays up until it is killed.
    script = f'echo $$ >> {pids}; if [ "$(wc -l < {pids})" -lt 4 ]; then sleep 1; exit 3; fi; exec sleep 120'
    job_id = pipeline.create_job(suite=agents.suite, script=script, retry={"max_retries": 3, **RESTART})
    schedule = create_schedule(pipeline, job_id, kind="daemon")

    running = wait_for(
        lambda: _running_pid(pipeline, schedule["id"], pids, run=4), timeout=40, what="run 4 to run"
    )
    runs = _runs(pipeline, schedule["id"])
    assert [run["status"] for run in runs] == ["failed", "failed", "failed", "running"]
    assert len(pids.read_text().split()) == 4  # one process per run: never two at once, no task retries
    # Each restart was due the restart delay after the previous run ended: 1 s, 2 s, 4 s (base 1, doubling).
    delays = [
        round((_at(nxt["scheduled_at"]) - _at(prev["completed_at"])).total_seconds(), 3)
        for prev, nxt in itertools.pairwise(runs)
    ]
    assert delays == [1.0, 2.0, 4.0]
    for prev, nxt in itertools.pairwise(runs):
        [instance] = pipeline.instances(nxt["id"])
        # The agent fires on its own clock (corrected by the offset it measured): allow it that error.
        assert _at(instance["started_at"]) >= _at(nxt["scheduled_at"]) - timedelta(milliseconds=100)
        assert prev["error"] == "exited with code 3"

    # Disabling the schedule kills the running process through the cancel path and leaves nothing live.
    task, pid = running
    pipeline.call("POST", f"/schedules/{schedule['id']}/disable")
    assert pipeline.task(task["id"])["status"] == "cancelled"
    instance = wait_for(
        lambda: (i := pipeline.call("GET", f"/instances/{task['instance_id']}"))["status"] != "running" and i,
        what="the agent to report the killed run",
    )
    assert instance["status"] == "cancelled"
    wait_for(lambda: _gone(pid), timeout=10, what=f"daemon process {pid} to be killed")
    assert _live(pipeline, schedule["id"]) == []
    assert len(pids.read_text().split()) == 4


def test_moves_to_another_agent_when_its_agent_is_killed(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    first, second = agents.start(), agents.start()
    pids = tmp_path / "pids"
    job_id = pipeline.create_job(
        suite=agents.suite, script=f"echo $$ >> {pids}; exec sleep 120", retry=RESTART
    )
    schedule = create_schedule(pipeline, job_id, kind="daemon")
    try:
        task, _ = wait_for(lambda: _running_pid(pipeline, schedule["id"], pids), what="the daemon to run")
        victim, survivor = (first, second) if task["agent_id"] == first.agent_id else (second, first)
        victim.kill()

        moved, _ = wait_for(
            lambda: (
                (found := _running_pid(pipeline, schedule["id"], pids))
                and found[0]["id"] != task["id"]
                and found
            ),
            what="the daemon to run again on the other agent",
        )
        assert moved["agent_id"] == survivor.agent_id
        lost = pipeline.task(task["id"])
        assert lost["status"] == "failed"
        assert [i["status"] for i in pipeline.instances(task["id"])] == ["lost"]
        assert len(_live(pipeline, schedule["id"])) == 1
    finally:
        pipeline.call("POST", f"/schedules/{schedule['id']}/disable")
        for pid in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)  # the killed agent's orphan
    assert _live(pipeline, schedule["id"]) == []
