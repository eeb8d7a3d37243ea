"""The agents connected to this server: agent id → its live `AgentSession`.

Only the server holding an agent's connection can talk to it; the registry is how the dispatcher, the command
router and the state sync find that connection. A reconnecting agent replaces its previous session (the old
one is closed), and a session that ends removes itself only if it is still the current one, so the end of a
stale connection never unregisters its successor.
"""

from __future__ import annotations

from collections.abc import Iterator

from hetuflow_server.broker.session import AgentSession
from hetuflow_server.service import AgentCapacity

__all__ = ["CLOSE_REPLACED", "SessionRegistry"]

CLOSE_REPLACED = 1000
"""Close code of a session replaced by a newer connection of the same agent (a normal closure)."""


class SessionRegistry:
    """Sessions by agent id (see the module docstring)."""

    def __init__(self) -> None:
        self._sessions: dict[str, AgentSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[AgentSession]:
        return iter(list(self._sessions.values()))

    def get(self, agent_id: str) -> AgentSession | None:
        """The live session of ``agent_id`` on this server, if any."""
        return self._sessions.get(agent_id)

    def add(self, session: AgentSession) -> None:
        """Make ``session`` the agent's current one, closing a previous session of the same agent."""
        previous = self._sessions.get(session.agent_id)
        if previous is not None and previous is not session:
            previous.close(CLOSE_REPLACED, "replaced by a newer connection of this agent")
        self._sessions[session.agent_id] = session

    def remove(self, session: AgentSession) -> bool:
        """Forget ``session``; False when it was not (or no longer) the agent's current one."""
        if self._sessions.get(session.agent_id) is session:
            del self._sessions[session.agent_id]
            return True
        return False

    def capacities(self) -> list[AgentCapacity]:
        """What each connected agent can take now (agents without credits are left out)."""
        views = (session.capacity_view() for session in self._sessions.values())
        return [view for view in views if view is not None]

    def free_credits(self) -> int:
        """Credits left across every connected agent that takes work."""
        return sum(view.free_slots for view in self.capacities())

    def close_all(self, code: int, reason: str) -> None:
        """Ask every session to close (server shutdown)."""
        for session in self._sessions.values():
            session.close(code, reason)
