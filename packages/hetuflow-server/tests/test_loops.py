"""Background loops: start order, reverse stop order, a failing step does not end its loop."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from hetuflow_server.loops import BackgroundLoops, LoopFactory, every, woken


async def test_loops_start_in_order_and_stop_in_reverse() -> None:
    events: list[str] = []

    def loop(name: str) -> LoopFactory:
        async def run() -> None:
            events.append(f"start {name}")
            try:
                await asyncio.Event().wait()
            finally:
                events.append(f"stop {name}")

        return run

    loops = BackgroundLoops()
    for name in ("heartbeat", "listener", "dispatcher"):
        loops.add(name, loop(name))
    loops.start()
    await asyncio.sleep(0)
    assert loops.running == ["heartbeat", "listener", "dispatcher"]
    assert {task.get_name() for task in asyncio.all_tasks()} >= {"hetuflow:heartbeat", "hetuflow:dispatcher"}
    await loops.stop()
    assert events == [
        "start heartbeat",
        "start listener",
        "start dispatcher",
        "stop dispatcher",
        "stop listener",
        "stop heartbeat",
    ]
    assert loops.running == []


async def test_every_logs_a_failing_step_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    done = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        if calls == 3:
            done.set()

    loops = BackgroundLoops()
    loops.add("flaky", every(0.001, step, name="flaky"))
    loops.start()
    await asyncio.wait_for(done.wait(), timeout=5)
    await loops.stop()
    assert calls >= 3
    assert "background loop flaky: step failed" in caplog.text


async def test_a_crashing_loop_is_logged_and_does_not_block_stop(caplog: pytest.LogCaptureFixture) -> None:
    async def crash() -> None:
        raise ValueError("bad state")

    loops = BackgroundLoops()
    loops.add("crasher", crash)
    loops.start()
    await asyncio.sleep(0.01)
    assert loops.running == []
    await loops.stop()
    assert "background loop hetuflow:crasher crashed" in caplog.text


def test_duplicate_and_late_registration_refused() -> None:
    async def idle() -> None:
        await asyncio.sleep(3600)

    loops = BackgroundLoops()
    loops.add("one", idle)
    with pytest.raises(ValueError, match="already registered"):
        loops.add("one", idle)
    assert loops.names == ["one"]


@pytest.mark.parametrize("kind", ["every", "woken"])
async def test_stop_ends_a_loop_whose_step_swallowed_the_cancellation(kind: str) -> None:
    # What a library wait can do on Python 3.11: the cancellation arrives as the awaited thing completes, and
    # the result is returned instead of CancelledError. The request stays counted on the task.
    inside = asyncio.Event()
    tasks: list[asyncio.Task[object]] = []

    async def swallowing_step() -> None:
        current = asyncio.current_task()
        assert current is not None
        tasks.append(current)
        inside.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    wake = asyncio.Event()
    wake.set()
    factory = (
        every(3600, swallowing_step, name="swallower")
        if kind == "every"
        else woken(wake, 3600, swallowing_step, name="swallower")
    )
    loops = BackgroundLoops()
    loops.add("swallower", factory)
    loops.start()
    await asyncio.wait_for(inside.wait(), 5)
    stopping = asyncio.create_task(loops.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    if not done:  # clean up what the failing assertion below reports
        tasks[0].cancel()
        await stopping
    assert done, "stop() was still waiting for the loop after 5 s"
    assert tasks[0].done()
