"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads the reconnects of many
agents that lost the same server at the same instant, so a restarted server is not hit by all of them
in one burst. The ceiling doubles per failed attempt up to a cap and starts over after a connection
that stayed healthy long enough (the session decides what healthy means). A server that refuses a
connection because it is busy may say when to come back (``Retry-After``): the jittered delay is then
added to that, so the refused agents do not all return at the same second either.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for consecutive failed attempts: ``uniform(0, min(max_secs, initial_secs * 2**n))``."""

    def __init__(self, initial_secs: float, max_secs: float, rng: random.Random | None = None) -> None:
        if initial_secs <= 0 or max_secs < initial_secs:
            raise ValueError("backoff needs 0 < initial_secs <= max_secs")
        self.initial_secs = initial_secs
        self.max_secs = max_secs
        self.attempts = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """Upper bound of the next delay."""
        # the exponent is bounded so a very long outage cannot overflow the float
        return min(self.max_secs, self.initial_secs * 2.0 ** min(self.attempts, 64))

    def next_delay(self, retry_after_secs: float = 0.0) -> float:
        """The delay before the next attempt, at least ``retry_after_secs`` (the server's ``Retry-After``);
        each call counts one more failure."""
        delay = max(retry_after_secs, 0.0) + self._rng.uniform(0.0, self.ceiling())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start over from ``initial_secs`` (after a healthy connection)."""
        self.attempts = 0
