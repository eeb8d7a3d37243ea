"""Run slots: at most ``capacity`` attempts have a process at once; the others wait their turn in order.

The agent may hold more attempts than it runs (dispatched ahead, so the next one is already here when a
process ends); an attempt that is due takes a slot before it starts its process and gives it back once
its outcome is decided. Turns are handed out first come, first served: a freed slot goes straight to
the oldest waiter instead of to whoever asks next. Slots are numbered from 0 to capacity - 1 so that what
runs in one can be recorded in a fixed place (``orphans.LeaderTable``).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["RunSlots"]


class RunSlots:
    """``capacity`` numbered slots handed out in arrival order (event-loop only, not thread-safe)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._free = list(range(capacity - 1, -1, -1))  # a stack: the lowest numbers are reused first
        self._waiters: deque[asyncio.Future[int]] = deque()

    @property
    def in_use(self) -> int:
        """Slots taken now."""
        return self.capacity - len(self._free)

    def try_take(self) -> int | None:
        """A free slot's number if there is one and nobody waits; the caller must ``release`` it."""
        if self._free and not self._waiters:
            return self._free.pop()
        return None

    def turn(self) -> asyncio.Future[int]:
        """A future resolved with a slot's number once it is handed to the caller (who must ``release`` it).

        Cancel the future to leave the queue; one resolved before the cancel still holds its slot.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        slot = self.try_take()
        if slot is not None:
            future.set_result(slot)
        else:
            self._waiters.append(future)
        return future

    def release(self, slot: int) -> bool:
        """Give ``slot`` back: to the oldest waiter still waiting (True), or to the free ones (False)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter left the queue
                waiter.set_result(slot)
                return True
        self._free.append(slot)
        return False
