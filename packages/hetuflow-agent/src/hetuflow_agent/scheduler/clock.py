"""The agent's estimate of the server clock.

Dispatches carry ``fire_at`` in server time, so the agent has to know how far its own wall clock is from
the server's. Every exchange that carries the server time (the registration response, each heartbeat
response) is one sample: the request left at ``sent`` (local), the server stamped ``server_time``, the
reply arrived at ``received`` (local). Assuming the two legs take equally long, the server stamped its
time at the local midpoint, so ``offset = server_time - (sent + received) / 2`` with an error of at most
half the round trip. Of the last few samples the one with the smallest round trip has the tightest error
bound, so that one is used (the NTP "clock filter" idea); a window of samples lets a drifting clock be
followed while one slow reply never spoils the estimate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, NamedTuple

__all__ = ["DEFAULT_WINDOW", "Clock", "ClockSample"]

DEFAULT_WINDOW: Final = 8
"""Samples kept; at the default 5 s heartbeat this covers the last 40 s."""


class ClockSample(NamedTuple):
    """One measurement: the offset (server minus local, seconds) and the round trip it was taken over."""

    offset_secs: float
    rtt_secs: float


class Clock:
    """Server time as seen from this agent: local wall clock plus a measured offset.

    Until the first sample arrives the offset is zero (the local clock is trusted). ``wall`` is the
    local clock in seconds since the epoch; tests inject one.
    """

    def __init__(self, *, window: int = DEFAULT_WINDOW, wall: Callable[[], float] = time.time) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._wall = wall
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self._best: ClockSample | None = None

    def observe(self, *, server_time_ms: float, sent_ms: float, received_ms: float | None = None) -> bool:
        """Add the sample of one request/response exchange; all three times are epoch milliseconds.

        ``sent_ms`` and ``received_ms`` are local times (``received_ms`` defaults to now). Returns False,
        and ignores the sample, when the round trip is negative (the local clock stepped backwards
        between send and receive) or the server time is missing (0), because such a sample says
        nothing reliable.
        """
        if received_ms is None:
            received_ms = self._wall() * 1000.0
        rtt_ms = received_ms - sent_ms
        if rtt_ms < 0 or server_time_ms <= 0:
            return False
        offset_ms = server_time_ms - (sent_ms + received_ms) / 2.0
        self._samples.append(ClockSample(offset_ms / 1000.0, rtt_ms / 1000.0))
        self._best = min(self._samples, key=lambda sample: sample.rtt_secs)
        return True

    @property
    def synced(self) -> bool:
        """True once at least one sample was taken."""
        return self._best is not None

    @property
    def offset_secs(self) -> float:
        """Server clock minus local clock, in seconds (0.0 before the first sample)."""
        return self._best.offset_secs if self._best is not None else 0.0

    @property
    def error_secs(self) -> float | None:
        """Upper bound of the offset's error (half the best round trip); None before the first sample."""
        return self._best.rtt_secs / 2.0 if self._best is not None else None

    def local_time(self) -> float:
        """The local wall clock, seconds since the epoch (the clock every local deadline is computed on)."""
        return self._wall()

    def server_time(self) -> float:
        """The current server time, seconds since the epoch."""
        return self._wall() + self.offset_secs

    def server_now(self) -> datetime:
        """The current server time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.server_time(), UTC)

    def to_local(self, server_moment: datetime) -> float:
        """The local epoch time at which the server clock shows ``server_moment`` (naive means UTC)."""
        if server_moment.tzinfo is None:
            server_moment = server_moment.replace(tzinfo=UTC)
        return server_moment.timestamp() - self.offset_secs
