"""Why the process manager refuses a dispatch.

The connection layer answers a refused dispatch with a negative ack; none of these is a crash.
"""

from __future__ import annotations

from hetuflow_agent.errors import AgentError

__all__ = ["CapacityExceeded", "NotAccepting", "SubmitRefused"]


class SubmitRefused(AgentError):
    """A dispatch was not taken."""


class CapacityExceeded(SubmitRefused):
    """Every slot is taken (held attempts, waiting plus running, equal the capacity plus the prefetch)."""

    def __init__(self, capacity: int, prefetch: int = 0) -> None:
        if prefetch:
            message = f"agent is at capacity ({capacity} tasks running, {prefetch} more held)"
        else:
            message = f"agent is at capacity ({capacity} tasks)"
        super().__init__(message)
        self.capacity = capacity
        self.prefetch = prefetch


class NotAccepting(SubmitRefused):
    """The manager is draining or closed and takes no new work."""

    def __init__(self) -> None:
        super().__init__("agent is shutting down and takes no new tasks")
