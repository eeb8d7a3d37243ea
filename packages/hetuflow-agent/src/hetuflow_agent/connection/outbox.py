"""The outbox: state-changing frames kept until the server acknowledges them.

Every ``TaskInstanceUpdated`` and ``TaskLogChunk`` the agent produces goes in here first. The session's
writer sends them in order; an ``ack`` from the server removes one; after a reconnect ``rewind`` makes
every unacknowledged frame due again, still in the original order and with the original message id, so
the server can apply each one exactly once.

Memory is bounded by ``max_bytes``. Status updates are small, few and decide a task's fate, so they are
never dropped. Log chunks are the bulk: when the bound is exceeded (a long outage with chatty tasks)
the *oldest* log chunks are dropped, counted in ``dropped_logs`` and reported in a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Final
from uuid import UUID

from hetuflow_core.protocol import RunningInstance, TaskInstanceUpdated, TaskLogChunk, encode

__all__ = ["Outbox", "OutboxEntry"]

logger = logging.getLogger(__name__)

_DROP_WARNING_INTERVAL_SECS: Final = 10.0
"""At most one warning about dropped log chunks per this many seconds; the count is cumulative."""


class OutboxEntry:
    """One frame waiting for its ack: its id, its JSON (UTF-8 bytes, as sent) and what it is about."""

    __slots__ = ("frame", "id", "raw", "size")

    def __init__(self, frame: TaskInstanceUpdated | TaskLogChunk) -> None:
        self.frame = frame
        self.id = frame.id
        self.raw = encode(frame)
        self.size = len(self.raw)

    @property
    def is_log(self) -> bool:
        """True for a log chunk (the only kind that may be dropped)."""
        return isinstance(self.frame, TaskLogChunk)


class Outbox:
    """Ordered frames awaiting acknowledgement, with a resend cursor per connection."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.dropped_logs = 0
        self._entries: dict[str, OutboxEntry] = {}  # insertion order is send order
        self._unsent: deque[str] = deque()
        self._logs: deque[str] = deque()  # log chunk ids, oldest first, for eviction
        self._bytes = 0
        self._has_unsent = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._last_drop_warning = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def pending_bytes(self) -> int:
        """Size of the frames held, in bytes of JSON text."""
        return self._bytes

    def put(self, frame: TaskInstanceUpdated | TaskLogChunk) -> None:
        """Queue a frame for sending; may drop old log chunks to stay within ``max_bytes``."""
        entry = OutboxEntry(frame)
        if entry.id in self._entries:
            return  # the same frame twice is still one frame
        self._entries[entry.id] = entry
        self._unsent.append(entry.id)
        if entry.is_log:
            self._logs.append(entry.id)
        self._bytes += entry.size
        self._empty.clear()
        self._has_unsent.set()
        if self._bytes > self.max_bytes:
            self._evict_logs()

    def ack(self, message_id: str) -> bool:
        """Forget the frame ``message_id``; False when it is not (or no longer) held."""
        entry = self._entries.pop(message_id, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        if not self._entries:
            self._empty.set()
        if len(self._logs) > 2 * len(self._entries) + 1024:
            # acked ids linger in the eviction queue; compact it now and then so it stays bounded
            self._logs = deque(i for i in self._logs if i in self._entries)
        return True

    def rewind(self) -> None:
        """Make every held frame due again, in order (a new connection starts)."""
        self._unsent = deque(self._entries)
        if self._unsent:
            self._has_unsent.set()

    async def next_unsent(self) -> OutboxEntry:
        """Wait for and return the next frame to send on the current connection."""
        while True:
            while self._unsent:
                entry = self._entries.get(self._unsent.popleft())
                if entry is not None:  # acked or dropped entries are skipped lazily
                    return entry
            self._has_unsent.clear()
            await self._has_unsent.wait()

    async def wait_empty(self, timeout_secs: float) -> bool:
        """Wait until every frame is acked; False when ``timeout_secs`` passed first."""
        try:
            async with asyncio.timeout(timeout_secs):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True

    def finished_instances(self) -> list[RunningInstance]:
        """Attempts whose final status is still unacked, for the state sync at registration.

        The agent no longer runs them, but the server must not declare them lost: their report is about
        to be replayed.
        """
        final: dict[UUID, RunningInstance] = {}
        for entry in self._entries.values():
            frame = entry.frame
            if isinstance(frame, TaskInstanceUpdated) and frame.data.status.is_final:
                data = frame.data
                final[data.instance_id] = RunningInstance(
                    instance_id=data.instance_id, task_id=data.task_id, status=data.status
                )
        return list(final.values())

    def _evict_logs(self) -> None:
        """Drop the oldest log chunks until the held bytes fit ``max_bytes`` again."""
        dropped = 0
        while self._bytes > self.max_bytes and self._logs:
            entry = self._entries.pop(self._logs.popleft(), None)
            if entry is not None:
                self._bytes -= entry.size
                dropped += 1
        if not dropped:
            return
        self.dropped_logs += dropped
        if not self._entries:
            self._empty.set()
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL_SECS:
            self._last_drop_warning = now
            logger.warning(
                "outbox over %d bytes: dropped the oldest log chunks (%d so far); status updates are kept",
                self.max_bytes,
                self.dropped_logs,
                extra={"dropped_logs": self.dropped_logs},
            )
