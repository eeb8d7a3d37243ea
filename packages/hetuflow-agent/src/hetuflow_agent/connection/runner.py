"""What the connection needs from the execution side, as a structural type.

The session hands dispatches, cancels and kills to a ``TaskRunner`` and asks it for the state sync and
the free slots it announces as credits. ``process.ProcessManager`` is the real one; keeping the
connection typed against this small protocol means it never imports process internals.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from hetuflow_core.protocol import RunningInstance, ScheduledTaskData

__all__ = ["TaskRunner"]


class TaskRunner(Protocol):
    """Runs dispatched attempts; reports progress through the callbacks it was built with."""

    @property
    def free_slots(self) -> int:
        """How many more dispatches it can hold right now."""
        ...

    def running(self) -> list[RunningInstance]:
        """Attempts it holds (waiting for their fire time or running), for the state sync."""
        ...

    async def submit(self, task: ScheduledTaskData) -> object:
        """Take one dispatched attempt; raises when it cannot be taken (the dispatch is refused)."""
        ...

    async def cancel(self, instance_id: UUID, reason: str) -> bool:
        """Stop an attempt (reported ``cancelled``); False when it is not held."""
        ...

    async def kill(self, instance_id: UUID) -> object:
        """Stop an attempt the server no longer wants (state sync), without waiting for it."""
        ...
