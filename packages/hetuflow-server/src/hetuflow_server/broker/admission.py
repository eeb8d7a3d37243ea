"""Admission of agent registrations: how many connections this server registers at once.

After a server restart or a network blip the whole fleet reconnects within a second or two. Registering them
all at once would queue every registration behind the others until they time out on the agents, which then
reconnect and queue again: a storm that feeds itself. So at most ``MAX_CONCURRENT_REGISTRATIONS`` connections
are between their upgrade request and their registration answer. The next ones wait for a place, which costs
nothing but a parked coroutine, for at most ``REGISTRATION_WAIT_SECS`` (well within the agent's own timeout)
and at most ``MAX_WAITING_REGISTRATIONS`` of them; beyond either bound the gateway refuses the connection at
once (HTTP 503 with ``Retry-After: REGISTRATION_RETRY_AFTER_SECS``, before the upgrade), and the agent comes
back after a jittered backoff. Refusing is the last resort, not the first: every refusal is a request the
agent makes again.
"""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = [
    "MAX_CONCURRENT_REGISTRATIONS",
    "MAX_WAITING_REGISTRATIONS",
    "REGISTRATION_RETRY_AFTER_SECS",
    "REGISTRATION_WAIT_SECS",
    "RegistrationGate",
]

MAX_CONCURRENT_REGISTRATIONS: Final = 32
"""Connections between their upgrade request and their registration answer at once. Each is a token check and
one short transaction: a few times the database pool keeps it busy without queueing work inside it."""
MAX_WAITING_REGISTRATIONS: Final = 1000
"""Connections that may wait for a place; more are refused at once."""
REGISTRATION_WAIT_SECS: Final = 3.0
"""The longest a connection waits for a place before it is refused (the agent gives the upgrade and the
registration 10 s each)."""
REGISTRATION_RETRY_AFTER_SECS: Final = 1
"""The ``Retry-After`` of a refused registration, in whole seconds (the agents add their own jitter)."""


class RegistrationGate:
    """A bounded count of registrations in progress, with a bounded wait for a place (see the module
    docstring). ``refused`` counts the connections turned away."""

    def __init__(
        self,
        limit: int = MAX_CONCURRENT_REGISTRATIONS,
        *,
        max_waiting: int = MAX_WAITING_REGISTRATIONS,
        wait_secs: float = REGISTRATION_WAIT_SECS,
    ) -> None:
        if limit < 1:
            raise ValueError("the registration limit must be at least 1")
        self.limit = limit
        self.max_waiting = max_waiting
        self.wait_secs = wait_secs
        self.waiting = 0
        self.refused = 0
        self._places = asyncio.Semaphore(limit)

    async def enter(self) -> bool:
        """Take a place, waiting for one within the bounds (then `leave` must follow); False, and counted,
        when the connection is to be refused."""
        if self._places.locked() and self.waiting >= self.max_waiting:
            self.refused += 1
            return False
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait_secs):
                await self._places.acquire()
        except TimeoutError:
            self.refused += 1
            return False
        finally:
            self.waiting -= 1
        return True

    def leave(self) -> None:
        """Give the place taken by `enter` back."""
        self._places.release()
