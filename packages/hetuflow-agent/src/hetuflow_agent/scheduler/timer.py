"""The precise timer: wait until a moment of the server clock, as exactly as asyncio allows.

The server dispatches a task up to a few seconds before it is due; the agent then fires it itself, so
the start time does not depend on the dispatcher's latency. A plain ``asyncio.sleep(delay)`` is not good
enough on its own: the event loop's selector rounds timeouts up to whole milliseconds and a long sleep
does not notice that the clock offset was corrected (a heartbeat) or that the wall clock was stepped in
between. So the wait goes in two phases: sleep in bounded slices, recomputing the local deadline from
the clock each time, until the deadline is ``SPIN_SECS`` away; then yield to the loop with
``sleep(0)`` until it has passed. The spin costs at most ``SPIN_SECS`` of loop time per fire and lets
other tasks run in between, and it never fires early.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Final

from hetuflow_agent.scheduler.clock import Clock

__all__ = ["MAX_SLICE_SECS", "SPIN_SECS", "PreciseTimer"]

SPIN_SECS: Final = 0.002
"""Below this distance to the deadline the timer yields instead of sleeping (selector rounding is 1 ms)."""

MAX_SLICE_SECS: Final = 0.5
"""Longest single sleep, so offset corrections and wall-clock steps are noticed within this time."""


class PreciseTimer:
    """Waits for moments of the server clock given by ``clock``.

    Cancelling the awaiting task cancels the wait (it is a plain coroutine).
    """

    def __init__(
        self, clock: Clock, *, spin_secs: float = SPIN_SECS, max_slice_secs: float = MAX_SLICE_SECS
    ) -> None:
        if spin_secs < 0 or max_slice_secs <= 0:
            raise ValueError("spin_secs must be >= 0 and max_slice_secs > 0")
        self.clock = clock
        self._spin_secs = spin_secs
        self._max_slice_secs = max_slice_secs

    def delay(self, fire_at: datetime) -> float:
        """Seconds from now until ``fire_at`` (server clock); negative when it is already past."""
        return self.clock.to_local(fire_at) - self.clock.local_time()

    async def wait_until(self, fire_at: datetime) -> float:
        """Return once the server clock has reached ``fire_at``; the result is how late, in seconds.

        A moment in the past returns at once.
        """
        while True:
            # Recomputed on every pass: the offset or the wall clock may have moved while we slept.
            remaining = self.delay(fire_at)
            if remaining <= 0:
                return -remaining
            if remaining > self._spin_secs:
                await asyncio.sleep(min(remaining - self._spin_secs, self._max_slice_secs))
            else:
                await asyncio.sleep(0)
