"""Why the process manager refuses a dispatch.

The connection layer answers a refused dispatch with a negative ack; none of these is a crash.
"""

from __future__ import annotations

from hetuflow_agent.errors import AgentError

__all__ = ["CapacityExceeded", "NotAccepting", "SubmitRefused"]


class SubmitRefused(AgentError):
    """A dispatch was not taken."""


class CapacityExceeded(SubmitRefused):
    """Every slot is taken (waiting plus running attempts equal the capacity)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(f"agent is at capacity ({capacity} tasks)")
        self.capacity = capacity


class NotAccepting(SubmitRefused):
    """The manager is draining or closed and takes no new work."""

    def __init__(self) -> None:
        super().__init__("agent is shutting down and takes no new tasks")
