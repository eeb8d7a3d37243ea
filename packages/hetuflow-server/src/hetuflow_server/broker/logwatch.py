"""Wake-ups of the live log tails on this server: the report batcher says which attempts it just stored.

A live tail (``endpoint.api.log_stream``) waits here between reads instead of polling the database in a tight
loop; chunks stored by another server (the agent is connected there) are picked up by the tail's short poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable
from uuid import UUID

__all__ = ["LogWatch"]


class LogWatch:
    """Wakes the live tails of attempts whose logs or status just changed on this server."""

    def __init__(self) -> None:
        self._waiters: dict[UUID, set[asyncio.Event]] = defaultdict(set)

    def notify(self, instance_ids: Iterable[UUID]) -> None:
        """Something about these attempts was stored."""
        for instance_id in instance_ids:
            for event in self._waiters.get(instance_id, ()):
                event.set()

    async def wait(self, instance_id: UUID, timeout_secs: float) -> None:
        """Return when ``instance_id`` changes here or after ``timeout_secs``."""
        event = asyncio.Event()
        self._waiters[instance_id].add(event)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_secs):
                    await event.wait()
        finally:
            waiters = self._waiters[instance_id]
            waiters.discard(event)
            if not waiters:
                del self._waiters[instance_id]
