"""The spawner's worker threads: results, errors, abandoned calls, fire-and-forget calls, shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from hetuflow_agent.process.workers import Workers


async def test_a_call_returns_its_result_or_raises_its_error_on_the_loop() -> None:
    workers = Workers(2, "test-workers")
    try:
        assert await workers.call(lambda a, b: a + b, 2, 3) == 5
        assert await workers.call(threading.current_thread) is not threading.current_thread()
        with pytest.raises(ZeroDivisionError):
            await workers.call(lambda: 1 / 0)
    finally:
        await asyncio.to_thread(workers.shutdown)


async def test_the_result_of_a_cancelled_call_goes_to_on_abandoned() -> None:
    workers = Workers(1, "test-workers")
    release = threading.Event()
    abandoned: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    try:
        call = workers.call(lambda: release.wait(5) and "the resource", on_abandoned=abandoned.set_result)
        call.cancel()
        release.set()
        assert await asyncio.wait_for(abandoned, 5) == "the resource"
    finally:
        await asyncio.to_thread(workers.shutdown)


async def test_submitted_calls_run_before_shutdown_returns_and_their_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = Workers(2, "test-workers")
    done: list[int] = []
    workers.submit(done.append, 1)
    workers.submit(lambda: 1 / 0)
    workers.submit(done.append, 2)
    with caplog.at_level(logging.ERROR):
        await asyncio.to_thread(workers.shutdown)
    assert sorted(done) == [1, 2]
    assert "background call" in caplog.text
    with pytest.raises(RuntimeError, match="shut down"):
        workers.submit(done.append, 3)
