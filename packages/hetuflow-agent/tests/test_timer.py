"""PreciseTimer: never early, late moments at once, cancellable, following the clock offset."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest

from hetuflow_agent.scheduler import Clock, PreciseTimer


def soon(seconds: float, clock: Clock) -> datetime:
    return clock.server_now() + timedelta(seconds=seconds)


async def test_fires_not_before_the_due_time() -> None:
    clock = Clock()
    timer = PreciseTimer(clock)
    lateness: list[float] = []
    for delay in (0.0, 0.005, 0.02, 0.05, 0.15):
        due = soon(delay, clock)
        late = await timer.wait_until(due)
        now = clock.server_now()
        assert now >= due
        assert 0 <= late < 1.0  # generous: only "not absurdly late" is a correctness property
        lateness.append(late)
    assert statistics.median(lateness) < 1.0


async def test_a_past_moment_returns_at_once_with_its_lateness() -> None:
    clock = Clock()
    started = time.monotonic()
    late = await PreciseTimer(clock).wait_until(clock.server_now() - timedelta(seconds=3))
    assert late >= 3.0
    assert time.monotonic() - started < 1.0


async def test_the_wait_is_cancellable() -> None:
    clock = Clock()
    waiting = asyncio.ensure_future(PreciseTimer(clock).wait_until(soon(60, clock)))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_server_time_is_what_counts() -> None:
    clock = Clock()
    # The server runs 30 s behind us: a moment 29.8 s ago on our clock is 0.2 s ahead on its clock.
    now_ms = time.time() * 1000
    clock.observe(server_time_ms=now_ms - 30_000, sent_ms=now_ms, received_ms=now_ms)
    due = datetime.now(UTC) - timedelta(seconds=29.8)
    started = time.monotonic()
    await PreciseTimer(clock, max_slice_secs=0.05).wait_until(due)
    assert time.monotonic() - started >= 0.15
    assert clock.server_now() >= due


async def test_an_offset_correction_during_the_wait_is_followed() -> None:
    clock = Clock()
    timer = PreciseTimer(clock, max_slice_secs=0.02)
    due = soon(30, clock)
    waiting = asyncio.ensure_future(timer.wait_until(due))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    # A heartbeat reveals the server is 30 s ahead: the moment is due now.
    now_ms = time.time() * 1000
    clock.observe(server_time_ms=now_ms + 30_000, sent_ms=now_ms, received_ms=now_ms)
    await asyncio.wait_for(waiting, 5)
    assert clock.server_now() >= due


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="spin_secs"):
        PreciseTimer(Clock(), spin_secs=-1)
