"""A real server stopped for ten seconds and started again: each misfire policy does what it says.

Three every-second schedules — ``skip``, ``run_once`` and ``run_all`` — run on a real agent; the server is
stopped (SIGTERM) for ten seconds and started again on the same port and database, and the agent reconnects.
Slots already handed to the agent before the stop run there on time (the agent fires on its own timer); the
slots that came due while no server could start them are judged at the first dispatch after the restart:

- ``skip``: every one of them is ``missed`` and nothing runs late;
- ``run_once``: exactly one runs late — the latest — and the others are ``missed``;
- ``run_all``: every one of them runs late, nothing is missed.

Before the stop and after the restart every slot runs on time, and every slot has exactly one record.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelinefixtures import FINAL, SERVER_ENV, AgentPool, Pipeline, wait_for
from schedulingfixtures import api_slot_records, at, create_schedule, disable, schedule_tasks, wait_until
from serverfixtures import start_server

from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

DOWN_SECS = 10.0
ON_TIME_SECS = 1.0
"""A run starting within this of its slot ran normally (the agent fires at the slot)."""


def classify(
    pipeline: Pipeline, slot: datetime, record: dict[str, Any], task: dict[str, Any], stopped_at: datetime
) -> str:
    """``missed``, ``handed`` (given to the agent before the stop), ``on_time`` or ``late``."""
    instances = pipeline.instances(task["id"])
    if record["outcome"] == "missed":
        assert task["status"] == "skipped"
        assert instances == []
        return "missed"
    assert record["outcome"] == "ran", record
    assert record["task_id"] == task["id"]
    if at(instances[0]["dispatched_at"]) < stopped_at:
        return "handed"  # whatever became of that attempt, its slot was judged before the outage
    assert task["status"] == "succeeded", (task, instances)
    late = (at(instances[-1]["started_at"]) - slot).total_seconds()
    return "on_time" if late < ON_TIME_SECS else "late"


def test_a_server_down_for_ten_seconds_applies_each_misfire_policy(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    # Room for every slot the dispatcher hands out ahead of time, so capacity never makes a slot late.
    agent = agents.start(capacity=8)
    schedules = {}
    for policy in ("skip", "run_once", "run_all"):
        job_id = pipeline.create_job(suite=agents.suite, script="true")
        schedules[policy] = create_schedule(
            pipeline, job_id, kind="cron", cron_expression="* * * * * *", misfire_policy=policy
        )
    created = max(at(schedule["created_at"]) for schedule in schedules.values())
    time.sleep(2.5)

    stopped_at = datetime.now(UTC)
    assert pipeline.server.terminate() == 0, pipeline.server.log()
    time.sleep(DOWN_SECS)
    old = pipeline.server
    restarted = start_server(old.data_dir, database_url=pipeline.database_url, env=SERVER_ENV, port=old.port)
    restarted.admin_token = old.admin_token
    pipeline.server = pipeline.servers[0] = restarted
    agent.wait_registered(2)
    back_at = datetime.now(UTC)  # the agent is connected again: the first dispatch judges the backlog
    until = back_at + timedelta(seconds=3)
    wait_until(until + timedelta(seconds=0.5))
    for schedule in schedules.values():
        disable(pipeline, schedule["id"])

    window_start = datetime.fromtimestamp(int(created.timestamp()) + 1, UTC)
    window = [window_start + timedelta(seconds=i) for i in range(int((until - window_start).total_seconds()))]
    surely_late = (stopped_at + timedelta(seconds=0.2), back_at - timedelta(seconds=MISFIRE_SLACK_SECS + 0.6))
    surely_normal = (stopped_at - timedelta(seconds=0.5), back_at + timedelta(seconds=1.0))
    for policy, schedule in schedules.items():

        def settled(
            schedule_id: str = schedule["id"],
        ) -> tuple[dict[datetime, Any], dict[datetime, Any]] | None:
            tasks = schedule_tasks(pipeline, schedule_id)
            if not all(slot in tasks and tasks[slot]["status"] in FINAL for slot in window):
                return None
            return tasks, api_slot_records(pipeline, schedule_id)

        tasks, records = wait_for(settled, what=f"the {policy} schedule's window to settle")
        kinds: dict[datetime, str] = {}
        for slot in window:
            assert slot in records, f"{policy}: slot {slot} has no record"
            kinds[slot] = classify(pipeline, slot, records[slot], tasks[slot], stopped_at)
        normal = [s for s in window if s < surely_normal[0] or s > surely_normal[1]]
        assert all(kinds[s] in ("on_time", "handed") for s in normal), (policy, kinds)
        judged = [s for s in window if surely_late[0] < s < surely_late[1] and kinds[s] != "handed"]
        # Up to a look-ahead (5 s) of slots went to the agent before the stop; the rest is judged.
        assert len(judged) >= 3, (policy, judged)
        late = [s for s in window if kinds[s] == "late"]
        missed = [s for s in window if kinds[s] == "missed"]
        if policy == "skip":
            assert late == [], kinds
            assert set(judged) <= set(missed)
        elif policy == "run_once":
            assert len(late) == 1, kinds
            assert set(judged) - set(late) <= set(missed)
            assert all(s < late[0] for s in missed)  # the one that ran is the latest late slot
        else:
            assert missed == [], kinds
            assert set(judged) <= set(late)
