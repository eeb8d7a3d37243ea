"""Leader failover with real servers: kill -9 of the leader hands the lease to the other server within twice
the lease, and every-second cron and interval schedules keep firing across it, each slot exactly once.

The servers run with a 2 s lease and a 6 s generation horizon, so the slots at the end of the test window lie
beyond what the dead leader had planned: the new leader must generate them. The schedules allow a grace of
twice the lease, the documented failover bound: a slot planned late by a failover within that bound is not
late, so none may be missing (the misfire policy would record a late one ``missed``).

A leader that hangs (SIGSTOP) inside its lease transaction, holding the lease row, is replaced as well: the
database ends a session idle in a transaction for a lease (``idle_in_transaction_session_timeout``), which
releases the row.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hahelpers import Ledger, assert_ran_once, frozen, leader, leader_lease, server_ids, wait_job_ended
from pipelinefixtures import FINAL, AgentPool, Pipeline, wait_for
from schedulingfixtures import api_slot_records, at, create_schedule, disable, schedule_tasks, wait_until

from hetuflow_server.errors import DatabaseUnavailable
from hetuflow_server.infra import ModelManager

LEASE_SECS = 2.0
HORIZON_SECS = 6.0
SLOT = timedelta(seconds=1)
RETRY = {"max_retries": 2, "backoff": "fixed", "base_secs": 0.2, "jitter": 0.0}


@pytest.fixture(scope="module")
def pipeline_env() -> dict[str, str]:
    return {
        "HETUFLOW_SCHEDULER__LEASE_SECS": str(LEASE_SECS),
        "HETUFLOW_SCHEDULER__GENERATION_HORIZON_SECS": str(HORIZON_SECS),
        "HETUFLOW_DATABASE__POOL_MAX": "4",
    }


def _slots_in(pipeline: Pipeline, schedule_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The schedule's tasks with a slot in ``[start, end]``, in slot order, once every one is final."""

    def settled() -> list[dict[str, Any]] | None:
        tasks = schedule_tasks(pipeline, schedule_id)  # fails on a slot with two tasks
        window = [task for slot, task in sorted(tasks.items()) if start <= slot <= end]
        return window if all(task["status"] in FINAL for task in window) else None

    return wait_for(settled, what=f"the slots of schedule {schedule_id} to end")


def _assert_every_slot_ran_once(
    pipeline: Pipeline, schedule_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    tasks = _slots_in(pipeline, schedule_id, start, end)
    slots = [at(task["scheduled_at"]) for task in tasks]
    gaps = [(a, b) for a, b in itertools.pairwise(slots) if b - a != SLOT]
    assert not gaps, f"slots missing or out of step: {gaps}"
    assert slots, f"no slot between {start} and {end}"
    assert slots[0] - start < SLOT, (start, slots[0])
    assert end - slots[-1] < SLOT, (slots[-1], end)
    records = api_slot_records(pipeline, schedule_id)
    for task in tasks:
        assert task["status"] == "succeeded", task
        record = records[at(task["scheduled_at"])]
        assert (record["outcome"], record["task_id"]) == ("ran", task["id"]), record
    return tasks


def test_kill_9_of_the_leader_fails_over_within_twice_the_lease_and_schedules_fire_every_slot_once(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    standby = pipeline.start_server("standby")
    old = leader(pipeline)
    assert old is pipeline.server, "the first server should have taken the lease"
    for servers in ([old, standby], [standby, old]):  # one agent on each server, either can fail over
        agents.start(servers=servers, capacity=2)
    ledger = Ledger(tmp_path / "ledger")
    job_id = pipeline.create_job(suite=agents.suite, script=ledger.script("sleep 0.2"), retry=RETRY)
    grace = {"misfire_grace_secs": 2 * LEASE_SECS}
    cron = create_schedule(pipeline, job_id, kind="cron", cron_expression="* * * * * *", **grace)
    interval = create_schedule(pipeline, job_id, kind="interval", interval_secs=1, **grace)
    start = datetime.now(UTC) + 2 * SLOT  # both schedules have planned by then

    wait_until(start + 2 * SLOT)  # a few slots run under the first leader
    old_lease = leader_lease(pipeline)
    planned_by_old = max(
        at(pipeline.call("GET", f"/schedules/{s['id']}")["generated_until"]) for s in (cron, interval)
    )
    killed_at = datetime.now(UTC)
    pipeline.kill_server(old)  # the API client moves to the standby

    wait_for(lambda: leader(pipeline) is standby, timeout=4 * LEASE_SECS, what="the standby to lead")
    new_lease = leader_lease(pipeline)
    failover = (new_lease["acquired_at"] - killed_at).total_seconds()
    assert server_ids(pipeline)[new_lease["holder"]] == standby.url
    assert new_lease["token"] > old_lease["token"]  # a new term: the dead leader's writes are fenced off
    assert failover < 2 * LEASE_SECS, f"the lease moved {failover:.2f} s after the kill"

    # Run on until well past what the dead leader had planned: those slots are the new leader's work.
    end = max(planned_by_old, datetime.now(UTC)) + 2 * SLOT
    wait_until(end + SLOT)
    for schedule in (cron, interval):
        disable(pipeline, schedule["id"])
    beyond = 0
    for schedule in (cron, interval):
        tasks = _assert_every_slot_ran_once(pipeline, schedule["id"], start, end)
        beyond += sum(at(task["scheduled_at"]) > planned_by_old for task in tasks)
    assert beyond >= 2, "no slot of the window was left for the new leader to plan"
    attempts = wait_job_ended(pipeline, job_id)  # the window's tasks, those before it and the last ones
    retried = [task_id for task_id, runs in attempts.items() if len(runs) > 1]
    assert_ran_once(attempts, ledger, retried=retried)  # a dispatch in flight to the dead server may retry
    print(
        f"leader failover: lease taken {failover:.2f} s after kill -9 (lease {LEASE_SECS:g} s);"
        f" {beyond} slots planned by the new leader; {len(attempts)} runs, {len(retried)} retried"
    )


_LEASE_ROW = b"SELECT holder FROM sched_lease WHERE name = 'leader' FOR UPDATE"
_WAITING_ON_LEASE = b"""
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%%sched_lease%%'
"""
_IDLE_ON_LEASE = b"""
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE '%%sched_lease%%'
"""


def _count(conn: psycopg.Connection[Any], query: bytes) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def test_a_leader_hung_inside_its_lease_transaction_is_replaced_within_twice_the_lease(
    pipeline: Pipeline,
) -> None:
    hung = leader(pipeline)
    assert hung is not None
    for other in [server for server in pipeline.servers if server is not hung]:
        assert other.terminate() == 0  # only the leader renews while the trap below is set
        pipeline.servers.remove(other)
    # The trap: hold the lease row until the leader's renewal waits for it, freeze the leader, let the
    # renewal through. The leader now sits in an open transaction holding the row, as a server frozen by
    # the OS, stalled by a bug or cut off from the database mid-transaction would.
    url = pipeline.database_url
    with psycopg.connect(url, autocommit=True) as spy, psycopg.connect(url) as trap:
        trap.execute(_LEASE_ROW)
        wait_for(lambda: _count(spy, _WAITING_ON_LEASE) == 1, what="the renewal to wait")
        with frozen(hung):
            trap.commit()
            wait_for(lambda: _count(spy, _IDLE_ON_LEASE) == 1, what="the frozen renewal to hold the row")
            frozen_at = time.monotonic()
            standby = pipeline.start_server("after-the-hang")
            ready_at = time.monotonic()
            standby_id = next(i for i, address in server_ids(pipeline).items() if address == standby.url)
            wait_for(
                lambda: leader_lease(pipeline)["holder"] == standby_id,
                timeout=4 * LEASE_SECS,
                what="the standby to take the lease from the hung leader",
            )
            took_at = time.monotonic()
    print(
        f"hung leader: standby ready {ready_at - frozen_at:.2f} s after the freeze,"
        f" leading {took_at - frozen_at:.2f} s after it"
    )
    # Within twice the lease of the freeze, give or take the standby's own start.
    assert took_at - frozen_at < 2 * LEASE_SECS + (ready_at - frozen_at)
    # Thawed, the old leader finds its session gone, knows it no longer leads and serves again.
    wait_for(lambda: httpx.get(f"{hung.url}/readyz", timeout=5).status_code == 200, what="the thawed server")
    assert leader(pipeline) is standby


async def test_a_session_idle_inside_a_transaction_is_ended_by_the_database(
    migrated_database_url: str,
) -> None:
    manager = ModelManager(
        migrated_database_url, min_size=1, max_size=1, idle_in_transaction_timeout_secs=0.2
    )

    async def hang_inside_a_transaction() -> None:
        async with manager.transaction() as conn:
            await conn.execute("SELECT 1")
            await asyncio.sleep(1.0)  # a server hung here keeps its locks no longer than the timeout
            await conn.execute("SELECT 1")

    await manager.open()
    try:
        with pytest.raises(DatabaseUnavailable):
            await hang_inside_a_transaction()
        await manager.ping()  # the pool replaces the ended session
    finally:
        await manager.close()
