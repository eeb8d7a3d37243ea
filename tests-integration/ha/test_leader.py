"""Leader election and fencing against a real PostgreSQL, and generators racing for the same schedules.

Two ``Leadership``s (two servers) share one lease: one holds it at a time, every change of holder raises the
fencing token, a crashed holder is replaced within twice the lease, a clean stop hands over at once. Two
``Generator``s on the same database — one losing its lease in the middle of a cycle without noticing — never
plan a slot twice, never count one twice, and the one that lost commits nothing after losing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from schedulingfixtures import Kit, slot_records, slot_tasks

from hetuflow_core.enums import ScheduleKind
from hetuflow_core.ids import uuid7
from hetuflow_core.schedule import Schedule, ScheduleCreate
from hetuflow_server.infra import ModelManager, bmc, db
from hetuflow_server.scheduler.leader import Leadership
from hetuflow_server.triggers import fire_times
from hetuflow_server.triggers.upcoming import schedule_trigger

pytestmark = pytest.mark.usefixtures("quiet_schedules")


async def expire_lease(kit: Kit) -> None:
    """Make the lease run out now, as if its holder had stopped renewing long enough ago."""
    async with kit.db.transaction() as conn:
        await conn.execute("UPDATE sched_lease SET expires_at = now() WHERE name = %s", (kit.lease_name,))


async def test_one_holder_at_a_time_and_the_token_grows_with_each_term(kit: Kit) -> None:
    first, second = kit.leader(), kit.leader()
    assert await first.step()
    assert first.tenure is not None
    token = first.tenure.token
    assert not await second.step()
    assert (second.is_leader, second.tenure) == (False, None)
    assert await first.step()  # a renewal keeps the term and its token
    assert first.tenure is not None
    assert first.tenure.token == token
    await first.release()
    assert not first.is_leader
    assert await second.step()  # a released lease is taken at once
    assert second.tenure is not None
    assert second.tenure.token == token + 1
    assert not await first.step()


async def test_a_stale_term_is_fenced_out(kit: Kit) -> None:
    old, new = kit.leader(), kit.leader()
    await old.step()
    stale = old.tenure
    assert stale is not None
    await expire_lease(kit)
    assert await new.step()
    # The old holder still believes it leads (its own clock says the lease has time left) ...
    assert old.is_leader
    async with kit.db.transaction() as conn:
        # ... but every fenced write refuses its term.
        assert not await old.fence(conn)
        assert not await bmc.LeaseBmc.hold(conn, kit.lease_name, holder=stale.holder, token=stale.token)
        assert await new.fence(conn)


async def test_a_crashed_leader_is_replaced_within_twice_the_lease(kit: Kit) -> None:
    lease_secs = 1.5
    crashed, standby = kit.leader(lease_secs=lease_secs), kit.leader(lease_secs=lease_secs)
    assert await crashed.step()  # its last renewal; then it dies without releasing
    renewed_at = time.monotonic()
    elected = asyncio.Event()
    standby.watch(lambda leading: elected.set() if leading else None)
    loop = asyncio.create_task(standby.loop()())
    try:
        await asyncio.wait_for(elected.wait(), 4 * lease_secs)
        assert time.monotonic() - renewed_at <= 2 * lease_secs
        # The crashed server's own view lapses with its lease, without any database round trip.
        await asyncio.sleep(max(0.0, renewed_at + lease_secs - time.monotonic()))
        assert not crashed.is_leader
    finally:
        loop.cancel()
        await asyncio.wait({loop})


async def test_stopping_the_loop_hands_the_lease_over_at_once(kit: Kit) -> None:
    leaving, standby = kit.leader(lease_secs=30), kit.leader(lease_secs=30)
    elected = asyncio.Event()
    leaving.watch(lambda leading: elected.set() if leading else None)
    loop = asyncio.create_task(leaving.loop()())
    await asyncio.wait_for(elected.wait(), 10)
    loop.cancel()
    await asyncio.wait({loop})
    assert not leaving.is_leader
    assert await standby.step()  # no need to wait 30 s for the lease to run out


# --- generators racing


class PausingManager:
    """A ModelManager whose ``pause_at``-th transaction waits for ``resume`` (to stop a cycle midway)."""

    def __init__(self, inner: ModelManager, pause_at: int) -> None:
        self._inner = inner
        self._count = 0
        self._pause_at = pause_at
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[db.Connection]:
        self._count += 1
        if self._count == self._pause_at:
            self.paused.set()
            await self.resume.wait()
        async with self._inner.transaction() as conn:
            yield conn


async def make_schedules(kit: Kit, count: int) -> list[Schedule]:
    job = await kit.make_job()
    return [
        await kit.services.schedules.create(
            ScheduleCreate(
                job_id=job.id, kind=ScheduleKind.INTERVAL, interval_secs=1 + i % 3, misfire_grace_secs=3600
            )
        )
        for i in range(count)
    ]


async def assert_each_slot_once(kit: Kit, schedules: list[Schedule]) -> None:
    """Every schedule has exactly one task per slot from its creation to its cursor, counted once."""
    async with kit.db.transaction() as conn:
        cur = await conn.execute(
            "SELECT schedule_id, scheduled_at, count(*) AS n FROM sched_task WHERE schedule_id = ANY(%s)"
            " GROUP BY schedule_id, scheduled_at HAVING count(*) > 1",
            ([s.id for s in schedules],),
        )
        assert await cur.fetchall() == []
    for schedule in schedules:
        stored = await kit.services.schedules.get(schedule.id)
        assert stored.generated_until is not None
        trigger = schedule_trigger(stored)
        assert trigger is not None
        slots = list(fire_times(trigger, stored.created_at, stored.generated_until))
        tasks = await slot_tasks(kit.db, schedule.id)
        assert [task.scheduled_at for task in tasks] == slots
        assert stored.fire_count == len(slots)
        assert await slot_records(kit.db, schedule.id) == []


async def test_a_leader_losing_its_lease_mid_cycle_commits_nothing_more(kit: Kit) -> None:
    schedules = await make_schedules(kit, 12)
    old_leader, new_leader = kit.leader(), kit.leader()
    await old_leader.step()
    # The old leader's cycle stops after its listing and five schedules (one transaction each) ...
    paused = PausingManager(kit.db, pause_at=7)
    old = kit.generator(old_leader, db=paused)
    new = kit.generator(new_leader)
    cycle = asyncio.create_task(old.cycle())
    await asyncio.wait_for(paused.paused.wait(), 10)
    # ... its lease runs out and the other server takes over and runs a full cycle ...
    await expire_lease(kit)
    assert await new_leader.step()
    assert old_leader.is_leader  # it has not noticed
    taken = await new.cycle()
    assert not taken.lost_lease
    assert taken.schedules == len(schedules) - 5  # the five the old leader finished are far enough ahead
    # ... then the old leader wakes up: its next write is fenced out and the cycle ends.
    paused.resume.set()
    report = await asyncio.wait_for(cycle, 10)
    assert report.lost_lease
    assert report.schedules == 5
    await assert_each_slot_once(kit, schedules)


async def test_generators_racing_through_leadership_changes_never_plan_a_slot_twice(kit: Kit) -> None:
    schedules = await make_schedules(kit, 8)
    leaders = [kit.leader(), kit.leader()]
    # Generation time moves two seconds per round (a two-second horizon), so both generators find work on
    # every round; the long grace keeps the misfire policy out of it.
    clock = [max(s.created_at for s in schedules)]
    generators = [kit.generator(leader, horizon_secs=2.0, clock=lambda: clock[0]) for leader in leaders]
    rng = random.Random(7)
    deposed_tries = 0
    for _ in range(20):
        clock[0] += timedelta(seconds=2)
        if rng.random() < 0.5:
            await expire_lease(kit)
        # Only some servers get to renew before the cycles: a deposed one may not have noticed yet.
        for leader in rng.sample(leaders, 2):
            if rng.random() < 0.7:
                await leader.step()
        reports = await asyncio.gather(*(generator.cycle() for generator in generators))
        deposed_tries += sum(report.lost_lease for report in reports)
    assert deposed_tries > 0, "the race never happened: both never believed they led at once"
    await assert_each_slot_once(kit, schedules)


def test_leadership_refuses_a_lease_of_no_length(model_manager: ModelManager) -> None:
    with pytest.raises(ValueError, match="lease_secs"):
        Leadership(model_manager, uuid7(), lease_secs=0)
