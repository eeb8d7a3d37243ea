"""The dispatcher loop: gives due work to the agents connected to this server and pushes it to them.

Every server runs one, for its own agents. It sleeps until something can have changed (a NOTIFY on the work
channel, an agent's credits or registration, the next due time asked from the database, or the slow safety
poll) and then claims work for the connected agents' credits and queues one ``ScheduledTask`` per attempt on
the agent's session. A dispatch that cannot be queued or that the agent refuses is handed back at once.
``lock`` is held while a round runs: the heartbeat state sync takes it too, so it never mistakes an attempt
created but not yet queued for one sent over a stale connection. See docs/architecture.md (Dispatching).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from hetuflow_server.broker.registry import SessionRegistry
from hetuflow_server.broker.session import SessionClosed
from hetuflow_server.errors import HetuflowError
from hetuflow_server.service import DispatchService

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)

BATCH_SIZE: Final = 200
"""Most attempts claimed in one round (a busy fleet takes several rounds back to back)."""
MIN_IDLE_SECS: Final = 0.05
"""Shortest sleep after a round that found nothing, should the database clock lag behind ours."""
ERROR_BACKOFF_SECS: Final = 1.0
"""Pause after a round that failed (database unavailable), before trying again."""


class Dispatcher:
    """Claims and pushes work for this server's agents (see the module docstring)."""

    def __init__(
        self,
        service: DispatchService,
        registry: SessionRegistry,
        *,
        lookahead_secs: float,
        safety_poll_secs: float,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._service = service
        self._registry = registry
        self._lookahead_secs = lookahead_secs
        self._safety_poll_secs = safety_poll_secs
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._handbacks: dict[str, set[UUID]] = defaultdict(set)
        self.lock = asyncio.Lock()
        """Held while a round claims and queues work (see the module docstring)."""
        self.rounds = 0
        self.dispatched = 0

    def wake(self) -> None:
        """Run a round soon (safe to call from any callback, any number of times)."""
        self._wake.set()

    def hand_back(self, instance_ids: Collection[UUID], reason: str) -> None:
        """Queue attempts that never reached their agent; the next round re-queues their tasks."""
        if instance_ids:
            self._handbacks[reason].update(instance_ids)
            self._wake.set()

    async def run(self) -> None:
        """Dispatch until cancelled; a failing round is logged and retried after a pause."""
        delay: float | None = 0.0
        while True:
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                delay = await self._round()
            except HetuflowError as exc:
                logger.warning("dispatch round failed: %s", exc.detail)
                delay = ERROR_BACKOFF_SECS
            except Exception:
                logger.exception("dispatch round failed unexpectedly")
                delay = ERROR_BACKOFF_SECS

    async def _round(self) -> float | None:
        """One round; how long to sleep before the next one unless woken (None: until woken or polled)."""
        self.rounds += 1
        await self._return_handbacks()
        capacities = self._registry.capacities()
        if not capacities:
            # Nobody here can take work: an acquire or a registration wakes us; the poll is only a safety net.
            return self._safety_poll_secs
        budget = min(self._batch_size, sum(capacity.free_slots for capacity in capacities))
        async with self.lock:
            round_ = await self._service.dispatch_round(
                capacities, lookahead_secs=self._lookahead_secs, limit=budget
            )
            dispatches = round_.dispatches
            undelivered: list[UUID] = []
            for dispatch in dispatches:
                session = self._registry.get(dispatch.instance.agent_id)
                try:
                    if session is None:
                        raise SessionClosed(dispatch.instance.agent_id)
                    session.push(dispatch)
                except SessionClosed:
                    undelivered.append(dispatch.instance.id)
        self.dispatched += len(dispatches) - len(undelivered)
        if undelivered:
            self.hand_back(undelivered, "the agent's connection closed before the dispatch was sent")
        if len(dispatches) >= budget and self._registry.free_credits() > 0:
            return 0.0  # a full batch and credits left: there may be more due work right now
        if self._registry.free_credits() <= 0:
            return self._safety_poll_secs  # the next acquire wakes us
        wake_at = round_.wake_at  # read in the round's transaction: it claimed less than its budget
        if wake_at is None:
            return self._safety_poll_secs
        delay = (wake_at - datetime.now(UTC)).total_seconds()
        floor = MIN_IDLE_SECS if not dispatches else 0.0
        return min(max(delay, floor), self._safety_poll_secs)

    async def _return_handbacks(self) -> None:
        handbacks, self._handbacks = self._handbacks, defaultdict(set)
        for reason, instance_ids in handbacks.items():
            try:
                requeued = await self._service.hand_back(instance_ids, reason=reason)
            except HetuflowError:
                self._handbacks[reason].update(instance_ids)  # try again next round
                raise
            logger.info("handed back %d attempts (%s)", len(requeued), reason)
