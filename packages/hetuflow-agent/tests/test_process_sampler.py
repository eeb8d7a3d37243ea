"""Process-tree sampling against real process trees."""

from __future__ import annotations

import asyncio
import os
import sys

from hetuflow_agent.process.sampler import sample_trees


async def test_a_tree_is_the_leader_and_every_descendant() -> None:
    # "ready" comes from the innermost shell once both sleeps were forked.
    script = "sleep 30 & bash -c 'sleep 30 & echo ready; wait' & wait"
    leader = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        assert leader.stdout is not None
        assert await leader.stdout.readline() == b"ready\n"
        gone = 2**22 + 12345  # above the default pid_max: no such process
        usage = await asyncio.to_thread(sample_trees, [leader.pid, gone])
        assert set(usage) == {leader.pid}
        tree = usage[leader.pid]
        assert tree.processes == 4  # bash, sleep, bash, sleep
        assert tree.rss_bytes > 0
        assert tree.cpu_secs >= 0
    finally:
        os.killpg(leader.pid, 9)
        await leader.wait()


async def test_cpu_time_of_the_tree_is_counted() -> None:
    busy = (
        "import time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print('x', flush=True)\n"
        "time.sleep(30)"
    )
    leader = await asyncio.create_subprocess_exec(
        sys.executable, "-c", busy, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        assert leader.stdout is not None
        await leader.stdout.readline()
        usage = await asyncio.to_thread(sample_trees, [leader.pid])
        assert usage[leader.pid].cpu_secs >= 0.25
    finally:
        os.killpg(leader.pid, 9)
        await leader.wait()
