"""Run slots with real processes: attempts held ahead of free slots, the leader table, the CPU limit.

The manager may hold ``prefetch`` attempts beyond the ``capacity`` it runs; these tests check that no
more than ``capacity`` processes ever run at once, that held attempts start in arrival order as slots
free, and that stops, drains and the state sync treat a held attempt like one waiting for its time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from uuid import UUID

import psutil
import pytest
from process_harness import Reports, open_manager, scheduled

from hetuflow_agent.process import CapacityExceeded
from hetuflow_agent.process.orphans import LEADERS_FILE, PID_FILE
from hetuflow_core.enums import InstanceStatus
from hetuflow_core.protocol import TaskInstanceUpdatedData


def most_at_once(reports: Reports) -> int:
    """The largest number of attempts between their ``running`` and their final report, over time."""
    running: set[UUID] = set()
    most = 0
    for event in reports.events:
        if isinstance(event, TaskInstanceUpdatedData):
            if event.status is InstanceStatus.RUNNING:
                running.add(event.instance_id)
            elif event.status.is_final:
                running.discard(event.instance_id)
            most = max(most, len(running))
    return most


def start_order(reports: Reports) -> list[UUID]:
    return [
        e.instance_id
        for e in reports.events
        if isinstance(e, TaskInstanceUpdatedData) and e.status is InstanceStatus.RUNNING
    ]


async def test_held_attempts_start_in_arrival_order_as_the_slot_frees(tmp_path: Path) -> None:
    tasks = [scheduled(script="sleep 0.1") for _ in range(5)]
    async with open_manager(tmp_path, capacity=1, prefetch=4) as (manager, reports):
        assert manager.free_slots == 5
        for task in tasks:
            assert await manager.submit(task)
        assert manager.free_slots == 0
        finals = [await reports.final(task.instance_id) for task in tasks]
        assert manager.free_slots == 5
    assert all(final.status is InstanceStatus.SUCCEEDED for final in finals)
    assert most_at_once(reports) == 1
    assert start_order(reports) == [task.instance_id for task in tasks]


async def test_never_more_than_capacity_run_at_once(tmp_path: Path) -> None:
    tasks = [scheduled(script="sleep 0.2") for _ in range(6)]
    async with open_manager(tmp_path, capacity=2, prefetch=4) as (manager, reports):
        for task in tasks:
            assert await manager.submit(task)
        finals = [await reports.final(task.instance_id) for task in tasks]
    assert all(final.status is InstanceStatus.SUCCEEDED for final in finals)
    assert most_at_once(reports) <= 2


async def test_no_more_than_capacity_plus_prefetch_is_taken(tmp_path: Path) -> None:
    first, second, third = (scheduled(script="sleep 30") for _ in range(3))
    async with open_manager(tmp_path, capacity=1, prefetch=1) as (manager, reports):
        assert await manager.submit(first)
        assert await manager.submit(second)
        with pytest.raises(CapacityExceeded, match=r"at capacity \(1 tasks running, 1 more held\)"):
            await manager.submit(third)
        await reports.started(first.instance_id)
        assert manager.running_count == 1
        statuses = {r.instance_id: r.status for r in manager.running()}
        assert statuses == {
            first.instance_id: InstanceStatus.RUNNING,
            second.instance_id: InstanceStatus.DISPATCHED,
        }


async def test_a_held_attempt_cancelled_never_starts_and_the_next_one_moves_up(tmp_path: Path) -> None:
    blocker, held, after = (scheduled(script=script) for script in ("sleep 30", "touch started", "true"))
    async with open_manager(tmp_path, capacity=1, prefetch=2, keep_task_dirs=True) as (manager, reports):
        for task in (blocker, held, after):
            assert await manager.submit(task)
        await reports.started(blocker.instance_id)
        assert await manager.cancel(held.instance_id, "not needed")
        cancelled = await reports.final(held.instance_id)
        assert manager.free_slots == 1
        assert await manager.kill(blocker.instance_id)
        assert (await reports.final(after.instance_id)).status is InstanceStatus.SUCCEEDED
    assert cancelled.status is InstanceStatus.CANCELLED
    assert [u.status for u in reports.updates(held.instance_id)] == [InstanceStatus.CANCELLED]
    assert not (tmp_path / "tasks" / str(held.instance_id) / "started").exists()


async def test_drain_hands_back_held_attempts(tmp_path: Path) -> None:
    running, held = scheduled(script="sleep 0.5"), scheduled(script="true")
    async with open_manager(tmp_path, capacity=1, prefetch=1) as (manager, reports):
        await manager.submit(running)
        await manager.submit(held)
        await reports.started(running.instance_id)
        await manager.drain(10)
    handed_back = await reports.final(held.instance_id)
    assert handed_back.status is InstanceStatus.LOST
    assert handed_back.error is not None
    assert "before it started" in handed_back.error
    assert (await reports.final(running.instance_id)).status is InstanceStatus.SUCCEEDED


async def test_a_failed_launch_while_held_gives_its_place_to_the_next(tmp_path: Path) -> None:
    blocker = scheduled(script="sleep 0.3")
    broken = scheduled(script="true", workdir=str(tmp_path / "missing"))
    fine = scheduled(script="true")
    async with open_manager(tmp_path, capacity=1, prefetch=2) as (manager, reports):
        for task in (blocker, broken, fine):
            assert await manager.submit(task)
        failed = await reports.final(broken.instance_id)
        assert (await reports.final(fine.instance_id)).status is InstanceStatus.SUCCEEDED
    assert failed.status is InstanceStatus.FAILED
    assert failed.error is not None
    assert "does not exist" in failed.error
    assert most_at_once(reports) == 1


async def test_running_leaders_are_in_the_table_and_blanked_after(tmp_path: Path) -> None:
    task = scheduled(script="sleep 30")
    table = tmp_path / "tasks" / LEADERS_FILE
    async with open_manager(tmp_path, capacity=2) as (manager, reports):
        await manager.submit(task)
        await reports.started(task.instance_id)
        [line] = [line for line in table.read_text().splitlines() if line.strip()]
        pid_text, started, instance = line.split()
        assert instance == str(task.instance_id)
        assert started.startswith("@")
        assert os.getpgid(int(pid_text)) == int(pid_text)  # the leader of its own group
        assert not (tmp_path / "tasks" / str(task.instance_id) / PID_FILE).exists()
        await manager.kill(task.instance_id)
        await reports.final(task.instance_id)
        assert table.read_text().strip() == ""


async def test_a_slot_passed_straight_on_holds_the_next_leader_and_is_blanked_once_free(
    tmp_path: Path,
) -> None:
    first, second = scheduled(script="true"), scheduled(script="sleep 30")
    table = tmp_path / "tasks" / LEADERS_FILE
    async with open_manager(tmp_path, capacity=1, prefetch=1) as (manager, reports):
        await manager.submit(first)
        await manager.submit(second)  # waits in line for the one slot
        await reports.final(first.instance_id)
        await reports.started(second.instance_id)
        [line] = [line for line in table.read_text().splitlines() if line.strip()]
        assert line.split()[2] == str(second.instance_id)
        await manager.kill(second.instance_id)
        await reports.final(second.instance_id)
        assert table.read_text().strip() == ""


async def test_start_kills_groups_recorded_by_older_agents(tmp_path: Path) -> None:
    task_dir = tmp_path / "tasks" / "left-by-an-older-agent"
    task_dir.mkdir(parents=True)
    orphan = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    try:
        (task_dir / PID_FILE).write_text(f"{orphan.pid} {psutil.Process(orphan.pid).create_time()!r}\n")
        async with open_manager(tmp_path, capacity=1):
            pass
        assert await asyncio.wait_for(orphan.wait(), 5) < 0
        assert not task_dir.exists()
    finally:
        if orphan.returncode is None:
            orphan.kill()
            await orphan.wait()


async def test_the_cpu_limit_is_set_on_the_leader_and_inherited_by_its_children(tmp_path: Path) -> None:
    # The leader holds the limit from its start, and what it forks inherits it.
    task = scheduled(script="ulimit -St; ulimit -Ht; bash -c 'ulimit -St'", limits={"cpu_secs": 3})
    async with open_manager(tmp_path) as (manager, reports):
        final = await reports.run(manager, task)
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert reports.output(task.instance_id).split() == [b"3", b"4", b"3"]


async def test_a_busy_child_is_stopped_by_its_inherited_cpu_limit(tmp_path: Path) -> None:
    task = scheduled(script="python3 -c 'while True: pass'; echo child status $?", limits={"cpu_secs": 1})
    # Sampling (which would also stop the tree) out of the way: this is about the kernel's limit.
    async with open_manager(tmp_path, sample_interval_secs=60) as (manager, reports):
        final = await reports.run(manager, task)
    # The leader itself used no CPU to speak of and exits 0; its child was ended by SIGXCPU.
    assert final.status is InstanceStatus.SUCCEEDED, final.error
    assert reports.output(task.instance_id) == f"child status {128 + signal.SIGXCPU}\n".encode()
