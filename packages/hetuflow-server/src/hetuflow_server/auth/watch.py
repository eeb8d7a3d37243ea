"""The live connections of each token, so that revoking a token ends them.

Bearer tokens are checked when a connection opens; an agent's WebSocket and a log tail then stay open for
hours. Each such connection registers here under its token's ``jti`` for as long as it lives and waits on
the event it gets; `TokenService` sets the events of a token when it learns that the token was revoked (its
own revocation, another server's NOTIFY, or the periodic check against the records) or has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from uuid import UUID

__all__ = ["TokenWatch"]


class TokenWatch:
    """The events of the live connections of each token."""

    def __init__(self) -> None:
        self._events: dict[UUID, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def watch(self, jti: UUID) -> Iterator[asyncio.Event]:
        """For the duration of the block, an event that is set when token ``jti`` must no longer be used."""
        event = asyncio.Event()
        self._events.setdefault(jti, set()).add(event)
        try:
            yield event
        finally:
            events = self._events.get(jti)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[jti]

    def jtis(self) -> list[UUID]:
        """The tokens that hold at least one live connection."""
        return list(self._events)

    def end(self, jti: UUID) -> int:
        """Set the events of token ``jti``'s connections; how many there were."""
        events = self._events.get(jti, set())
        for event in events:
            event.set()
        return len(events)
