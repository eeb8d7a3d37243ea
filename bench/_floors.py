"""The machine's floors: how fast this box can spawn ``bash -c true`` with nothing around it.

- **multi-process**: ``concurrency`` worker processes, each running ``subprocess.run(["bash", "-c", "true"])``
  back to back over its share of the tasks (what a prefork worker pool could reach at best);
- **one asyncio process**: one event loop spawning the same command, ``concurrency`` at a time (what a single
  Python process that spawns every task, as one hetuflow agent does, could reach at best).

No queue, no database, no network, no reports: these are ceilings, not peers.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from _peers._record import COMMAND


def _run_share(count: int) -> int:
    for _ in range(count):
        subprocess.run(COMMAND, check=True)
    return count


def _ready() -> None:
    """A no-op every worker runs once before the clock starts, so process start-up is not timed."""


def multi_process(count: int, concurrency: int) -> float:
    """Tasks/s of ``count`` spawns split over ``concurrency`` processes running back to back."""
    shares = [
        count // concurrency + (1 if index < count % concurrency else 0) for index in range(concurrency)
    ]
    with ProcessPoolExecutor(concurrency, mp_context=get_context("fork")) as pool:
        for future in [pool.submit(_ready) for _ in range(concurrency * 2)]:
            future.result()
        began = time.perf_counter()
        done = sum(pool.map(_run_share, shares))
        elapsed = time.perf_counter() - began
    if done != count:
        raise RuntimeError(f"multi-process floor ran {done} of {count} spawns")
    return count / elapsed


async def _asyncio_spawns(count: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            process = await asyncio.create_subprocess_exec(*COMMAND)
            if await process.wait() != 0:
                raise RuntimeError("bash -c true failed")

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - began)


def one_asyncio_process(count: int, concurrency: int) -> float:
    """Tasks/s of ``count`` spawns from one asyncio loop, ``concurrency`` at a time."""
    return asyncio.run(_asyncio_spawns(count, concurrency))
