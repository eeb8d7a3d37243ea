"""Misfires with a real server and agent: slots that only wait for a busy agent, and slots of an outage.

A schedule with the default settings whose only agent is busy for seconds runs every slot late, none missed:
its tasks were planned in time and the server was up, so waiting for capacity is no misfire. With
``start_deadline_secs`` the slots that could not start within it are recorded ``missed``.

A server stopped (SIGTERM) and started again on the same port and database is an outage: its slots were
planned in time (the generation horizon) but nothing watched them come due. Slots already handed to the agent
before the stop run there on time (the agent fires on its own timer). Of the others, those due more than
grace and slack before the scheduler's uptime began again (``sched_uptime.up_since``, recorded by the
restarted server) are late, however long the first dispatch after the restart takes; the rest only waited
for the agent to reconnect. With zero grace, after ten seconds down:

- ``skip``: every late slot is ``missed`` and none of them runs;
- ``run_once``: exactly one of them runs — the latest — and the others are ``missed``;
- ``run_all``: every one of them runs, nothing is missed.

With the defaults (``run_once``, 60 s grace), after more than a minute down, the slots due within the last
minute before the restart run, the latest slot beyond it runs too, and the older ones are ``missed``. Every
other slot runs, and every slot has exactly one record. The tests read which slots are late from what the
server recorded (when each attempt was dispatched, when the uptime began), never from how late a run
started: on a loaded machine an on-time slot can start seconds after its time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from pipelinefixtures import FINAL, SERVER_ENV, AgentPool, AgentProcess, Pipeline, wait_for
from schedulingfixtures import (
    api_slot_records,
    at,
    create_schedule,
    disable,
    first_second_after,
    schedule_tasks,
    wait_until,
)
from serverfixtures import start_server

from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

DOWN_SECS = 10.0
LONG_DOWN_SECS = 80.0
"""Longer than the default grace plus the dispatch look-ahead, with room for a few slots beyond both."""
BUSY_SECS = 8
"""How long the only agent is busy with something else while a schedule's slots come due."""

Settled = tuple[dict[datetime, Any], dict[datetime, Any]]


def outcome(pipeline: Pipeline, record: dict[str, Any], task: dict[str, Any], up_since: datetime) -> str:
    """``missed``, ``handed`` (given to the agent before the outage) or ``ran`` (after it), checking that the
    slot's task and attempts agree with its record."""
    instances = pipeline.instances(task["id"])
    if record["outcome"] == "missed":
        assert task["status"] == "skipped"
        assert instances == []
        return "missed"
    assert record["outcome"] == "ran", record
    assert record["task_id"] == task["id"]
    if at(instances[0]["dispatched_at"]) < up_since:
        return "handed"  # whatever became of that attempt, its slot was judged before the outage
    assert task["status"] == "succeeded", (task, instances)
    return "ran"


def restart(pipeline: Pipeline, agent: AgentProcess, down_secs: float) -> tuple[datetime, datetime]:
    """Stop the server for ``down_secs`` and start it again on the same port and database; when it stopped,
    and when the scheduler's uptime began again as the restarted server recorded it (a slot due more than
    grace and slack before that was not watched in time: the misfire policy judges it)."""
    stopped_at = datetime.now(UTC)
    assert pipeline.server.terminate() == 0, pipeline.server.log()
    time.sleep(down_secs)
    old = pipeline.server
    restarted = start_server(old.data_dir, database_url=pipeline.database_url, env=SERVER_ENV, port=old.port)
    restarted.admin_token = old.admin_token
    pipeline.server = pipeline.servers[0] = restarted
    agent.wait_registered(2)
    with psycopg.connect(pipeline.database_url) as conn:
        row = conn.execute("SELECT up_since FROM sched_uptime").fetchone()
    assert row is not None, "a server that started says the scheduler is up"
    up_since: datetime = row[0]
    assert up_since > stopped_at, "with every server stopped, the uptime began again"
    return stopped_at, up_since


def expected_outcomes(
    policy: str, kinds: dict[datetime, str], up_since: datetime, grace_secs: float
) -> dict[datetime, str]:
    """What each slot should have come to, from the outcomes of the slots handed out before the outage: the
    slots not handed out that came due more than grace and slack before ``up_since`` are late and follow
    ``policy``; every other slot runs."""
    unwatched_before = up_since - timedelta(seconds=grace_secs + MISFIRE_SLACK_SECS)
    late = sorted(s for s, kind in kinds.items() if kind != "handed" and s < unwatched_before)
    keep = {"skip": 0, "run_once": 1, "run_all": len(late)}[policy]
    runs = set(late[len(late) - keep :]) if keep else set()
    return {
        s: kind if kind == "handed" else ("ran" if s not in late or s in runs else "missed")
        for s, kind in kinds.items()
    }


def settle(pipeline: Pipeline, schedule_id: str, window: list[datetime]) -> Settled:
    """The schedule's tasks and slot records by slot, once every slot of ``window`` has a task in a final
    state (a missed slot's task is ``skipped``) and a record."""

    def settled() -> Settled | None:
        tasks = schedule_tasks(pipeline, schedule_id)
        if not all(slot in tasks and tasks[slot]["status"] in FINAL for slot in window):
            return None
        records = api_slot_records(pipeline, schedule_id)
        return (tasks, records) if all(slot in records for slot in window) else None

    return wait_for(settled, what=f"the slots of schedule {schedule_id} to settle")


def slots_between(start: datetime, end: datetime, step: int = 1) -> list[datetime]:
    """The fire times in ``(start, end)`` of a schedule firing on every whole multiple of ``step`` seconds."""
    first = first_second_after(start)
    first += timedelta(seconds=-first.second % step)
    slots = []
    while first < end:
        slots.append(first)
        first += timedelta(seconds=step)
    return slots


def while_busy(pipeline: Pipeline, agents: AgentPool, **fields: Any) -> tuple[list[datetime], Settled]:
    """An every-second schedule (with ``fields``) on an agent that runs one thing at a time and is busy with
    something else for ``BUSY_SECS`` as the schedule starts; its slots up to two seconds after the agent is
    free again, and its tasks and slot records once they settled."""
    agents.start(capacity=1)
    blocker = pipeline.run(suite=agents.suite, script=f"sleep {BUSY_SECS}")
    pipeline.wait_task(blocker, "running")
    job_id = pipeline.create_job(suite=agents.suite, script="true")
    schedule = create_schedule(pipeline, job_id, kind="cron", cron_expression="* * * * * *", **fields)
    pipeline.wait_task(blocker)
    until = datetime.now(UTC) + timedelta(seconds=2)
    wait_until(until + timedelta(seconds=0.5))
    disable(pipeline, schedule["id"])
    window = slots_between(at(schedule["created_at"]), until)
    return window, settle(pipeline, schedule["id"], window)


def started_late(pipeline: Pipeline, slot: datetime, task: dict[str, Any]) -> float:
    """Seconds between a slot and the start of its run."""
    (instance,) = pipeline.instances(task["id"])
    return (at(instance["started_at"]) - slot).total_seconds()


def test_a_busy_agent_delays_the_slots_of_a_default_schedule_and_drops_none(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    window, (tasks, records) = while_busy(pipeline, agents)  # the schedule's settings are the defaults
    assert {slot: records[slot]["outcome"] for slot in window} == dict.fromkeys(window, "ran")
    assert all(tasks[slot]["status"] == "succeeded" for slot in window)
    # The slots that came due while the agent was busy waited longer than the old zero grace allowed.
    waited = [slot for slot in window if started_late(pipeline, slot, tasks[slot]) > MISFIRE_SLACK_SECS + 1]
    assert len(waited) >= 2, window


def test_a_start_deadline_misses_the_slots_that_waited_longer(pipeline: Pipeline, agents: AgentPool) -> None:
    window, (tasks, records) = while_busy(pipeline, agents, start_deadline_secs=2)
    missed = [slot for slot in window if records[slot]["outcome"] == "missed"]
    # The agent was busy for longer than the deadline (plus the slack) after the first slots came due.
    assert len(missed) >= 2, records
    for slot in missed:
        assert "not started within the start deadline of 2 s" in records[slot]["detail"]
        assert tasks[slot]["status"] == "skipped"
    ran = [slot for slot in window if slot not in missed]
    assert all(records[slot]["outcome"] == "ran" for slot in ran)
    assert ran, records  # the slots due once the agent was free again ran


def test_a_server_down_for_ten_seconds_applies_each_misfire_policy(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    # Room for every slot the dispatcher hands out ahead of time, so capacity never makes a slot late.
    agent = agents.start(capacity=8)
    schedules = {}
    for policy in ("skip", "run_once", "run_all"):
        job_id = pipeline.create_job(suite=agents.suite, script="true")
        schedules[policy] = create_schedule(
            pipeline,
            job_id,
            kind="cron",
            cron_expression="* * * * * *",
            misfire_policy=policy,
            misfire_grace_secs=0,  # every slot of the outage is beyond grace
        )
    created = max(at(schedule["created_at"]) for schedule in schedules.values())
    time.sleep(2.5)

    stopped_at, up_since = restart(pipeline, agent, DOWN_SECS)
    until = datetime.now(UTC) + timedelta(seconds=3)
    wait_until(until + timedelta(seconds=0.5))
    for schedule in schedules.values():
        disable(pipeline, schedule["id"])

    window = slots_between(created, until)
    for policy, schedule in schedules.items():
        tasks, records = settle(pipeline, schedule["id"], window)
        kinds = {slot: outcome(pipeline, records[slot], tasks[slot], up_since) for slot in window}
        assert kinds == expected_outcomes(policy, kinds, up_since, grace_secs=0), (policy, up_since)
        late = [
            s for s in window if kinds[s] != "handed" and s < up_since - timedelta(seconds=MISFIRE_SLACK_SECS)
        ]
        # Up to a look-ahead (5 s) of slots went to the agent before the stop; the rest of the ten seconds
        # came due unwatched.
        assert len(late) >= 3, (policy, late, up_since)
        assert all(s > stopped_at for s in late), (policy, late)
        for s in window:
            if kinds[s] == "missed":
                assert f"misfire policy {policy}" in records[s]["detail"], records[s]


def test_after_a_long_outage_a_default_schedule_runs_the_latest_missed_slot_once(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    # Room for every slot of the outage within grace at once, so capacity never makes a slot later.
    agent = agents.start(capacity=40)
    job_id = pipeline.create_job(suite=agents.suite, script="true")
    schedule = create_schedule(pipeline, job_id, kind="cron", cron_expression="*/2 * * * * *")
    grace = schedule["misfire_grace_secs"]
    assert (schedule["misfire_policy"], grace) == ("run_once", 60)
    time.sleep(3)

    stopped_at, up_since = restart(pipeline, agent, LONG_DOWN_SECS)
    until = datetime.now(UTC) + timedelta(seconds=4)
    wait_until(until + timedelta(seconds=0.5))
    disable(pipeline, schedule["id"])

    window = slots_between(at(schedule["created_at"]), until, step=2)
    tasks, records = settle(pipeline, schedule["id"], window)
    kinds = {slot: outcome(pipeline, records[slot], tasks[slot], up_since) for slot in window}
    assert kinds == expected_outcomes("run_once", kinds, up_since, grace_secs=grace), up_since
    judged = sorted(s for s in window if stopped_at < s < up_since and kinds[s] != "handed")
    missed = [s for s in judged if kinds[s] == "missed"]
    ran = [s for s in judged if kinds[s] != "missed"]
    # The slots more than the grace (and slack) before the restart are late: the oldest are missed, the
    # latest of them runs, and so does every slot of the last minute.
    assert missed, kinds
    assert all(m < r for m in missed for r in ran), kinds
    (first, *_) = ran
    (instance,) = pipeline.instances(tasks[first]["id"])
    assert (at(instance["dispatched_at"]) - first).total_seconds() > grace + MISFIRE_SLACK_SECS, kinds
    assert [s for s in window if kinds[s] == "missed"] == missed  # nothing outside the outage was missed
