"""Run slots: at most ``capacity`` attempts have a process at once; the others wait their turn in order.

The agent may hold more attempts than it runs (dispatched ahead, so the next one is already here when a
process ends); an attempt that is due takes a slot before it starts its process and gives it back once
its outcome is decided. Turns are handed out first come, first served: a freed slot goes straight to
the oldest waiter instead of to whoever asks next.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["RunSlots"]


class RunSlots:
    """``capacity`` slots handed out in arrival order (event-loop only, not thread-safe)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        """Slots taken now."""
        return self.capacity - self._free

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for one; the caller must ``release`` it."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    def turn(self) -> asyncio.Future[None]:
        """A future resolved when a slot is handed to the caller (then it must ``release`` it).

        Cancel the future to leave the queue; one resolved before the cancel still holds its slot.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.try_take():
            future.set_result(None)
        else:
            self._waiters.append(future)
        return future

    def release(self) -> None:
        """Give a slot back: to the oldest waiter still waiting, or to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter left the queue
                waiter.set_result(None)
                return
        self._free += 1
