"""The scheduler's configuration keys take effect in a real server: ``generation_interval_secs`` and
``misfire_slack_secs``.

The module's server runs with a 20 s generation interval (the default would be 5 s) and a 30 s misfire slack
(default 1 s). A schedule written straight into the database, which no NOTIFY announces, is only planned at
the next timed cycle: not within the default interval, at once when something wakes the generator. A paused
schedule with the strictest misfire settings (``skip``, no grace) runs the slots of a pause of a few seconds
when enabled again, because they are within the slack — for the generator, which plans them, and for the
dispatcher, which judges them when it starts them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from pipelinefixtures import FINAL, AgentPool, Pipeline, wait_for
from schedulingfixtures import api_slot_records, create_schedule, disable, schedule_tasks, wait_until

INTERVAL_SECS = 20.0
SLACK_SECS = 30.0
DEFAULT_INTERVAL_SECS = 5.0
PAUSE_SECS = 10.0
"""Longer than the dispatch look-ahead (5 s), so some slots of the pause were never handed to the agent."""


@pytest.fixture(scope="module")
def pipeline_env() -> dict[str, str]:
    return {
        "HETUFLOW_SCHEDULER__GENERATION_HORIZON_SECS": "60",
        "HETUFLOW_SCHEDULER__GENERATION_INTERVAL_SECS": str(INTERVAL_SECS),
        "HETUFLOW_SCHEDULER__MISFIRE_SLACK_SECS": str(SLACK_SECS),
    }


def slot_tasks(pipeline: Pipeline, schedule_id: str) -> int:
    return len(schedule_tasks(pipeline, schedule_id))


def test_the_generator_waits_the_configured_interval_between_cycles(pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(script="true", labels={"nobody": "runs-this"})
    # A cycle now (a new schedule wakes the generator); the next timed one is an interval away.
    woken = create_schedule(pipeline, job_id, kind="interval", interval_secs=10)
    wait_for(lambda: slot_tasks(pipeline, woken["id"]), what="the first schedule's tasks")
    time.sleep(1)  # a wake-up that came during that cycle has had its own cycle too
    silent = uuid4()
    with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
        conn.execute(
            b"INSERT INTO sched_schedule (id, job_id, kind, interval_secs) VALUES (%s, %s, 'interval', 10)",
            (silent, job_id),
        )
    time.sleep(DEFAULT_INTERVAL_SECS + 2)
    assert slot_tasks(pipeline, str(silent)) == 0  # not planned: no cycle ran since
    disable(pipeline, woken["id"])  # a change wakes the generator
    wait_for(lambda: slot_tasks(pipeline, str(silent)), what="the silent schedule's task")


def test_slots_within_the_configured_slack_are_not_late(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start(capacity=8)
    job_id = pipeline.create_job(suite=agents.suite, script="true")
    schedule = create_schedule(
        pipeline, job_id, kind="interval", interval_secs=1, misfire_policy="skip", misfire_grace_secs=0
    )
    time.sleep(2)
    disable(pipeline, schedule["id"])
    disabled_at = datetime.now(UTC)
    time.sleep(PAUSE_SECS)
    pipeline.call("POST", f"/schedules/{schedule['id']}/enable")
    until = datetime.now(UTC) + timedelta(seconds=2)
    wait_until(until + timedelta(seconds=0.5))
    disable(pipeline, schedule["id"])

    # The pause's slots that were never handed to the agent (beyond the look-ahead), up to the re-enable.
    start = disabled_at + timedelta(seconds=6)
    start = datetime.fromtimestamp(int(start.timestamp()) + 1, UTC)
    pause = [start + timedelta(seconds=i) for i in range(int((until - start).total_seconds()))]
    assert len(pause) >= 2

    def settled() -> dict[datetime, dict[str, Any]] | None:
        tasks = schedule_tasks(pipeline, schedule["id"])
        if not all(slot in tasks and tasks[slot]["status"] in FINAL for slot in pause):
            return None
        records = api_slot_records(pipeline, schedule["id"])
        return records if all(slot in records for slot in pause) else None

    records = wait_for(settled, what="the pause's slots to settle")
    # With the default slack of 1 s, the generator would have recorded the slots of the pause more than a
    # second old missed when it planned them, and the dispatcher those it started more than a second late.
    assert {slot: records[slot]["outcome"] for slot in pause} == dict.fromkeys(pause, "ran")
    assert [slot for slot, record in records.items() if record["outcome"] == "missed"] == []
