"""Batching of what agents report: status updates and log chunks of every agent, stored a few at a time.

Agents send ``instance.updated`` and ``instance.log`` frames one by one; applying each in its own transaction
would cost a round trip per frame. The gateway hands them to the ``ReportBatcher`` instead, which waits a
couple of milliseconds for more (from any agent), then stores the log chunks of the batch in one statement
and applies the status reports in one transaction (``DispatchService.apply_agent_reports``), and only then
acks each frame on its session. Batches are flushed one after the other in arrival order, so the chunks an
agent sent before its final report are stored before that report is applied (a log tail that sees the attempt
final has seen all of its output).

A failing batch is retried with backoff; one that still fails is split so that a single bad frame is refused
(acked ``ok: false``) without refusing its neighbours. When the database stays unreachable the sessions
involved are closed: their agents reconnect (maybe to another server) and resend what was never acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple
from uuid import UUID

from hetuflow_core.protocol import Ack, AckData, TaskInstanceUpdated, TaskLogChunk
from hetuflow_server.broker.session import AgentSession, SessionClosed
from hetuflow_server.errors import DatabaseUnavailable, HetuflowError
from hetuflow_server.infra.bmc import NewLogChunk
from hetuflow_server.service import AgentReport, DispatchService, ReportOutcome, ReportResult

__all__ = ["CLOSE_TRY_AGAIN", "ReportBatcher"]

logger = logging.getLogger(__name__)

BATCH_WINDOW_SECS: Final = 0.002
"""How long a batch waits for more frames after the first one arrived."""
MAX_BATCH: Final = 2000
"""Most frames flushed in one batch."""
MAX_PENDING: Final = 50_000
"""Frames waiting beyond which readers stop reading (back-pressure onto the agents' sockets)."""
RETRY_DELAYS_SECS: Final = (0.05, 0.25, 1.0)
"""Delays between the attempts at one batch."""
CLOSE_TRY_AGAIN: Final = 1013
"""Close code when reports cannot be stored now: the agent reconnects and resends ("try again later")."""


class _Item(NamedTuple):
    session: AgentSession
    frame: TaskInstanceUpdated | TaskLogChunk


class ReportBatcher:
    """Collects report frames of all agents and stores them in batches (see the module docstring)."""

    def __init__(
        self,
        service: DispatchService,
        *,
        on_stored: Callable[[set[UUID], Sequence[ReportResult]], None] | None = None,
        window_secs: float = BATCH_WINDOW_SECS,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._service = service
        self._on_stored = on_stored
        self._window_secs = window_secs
        self._max_batch = max_batch
        self._pending: list[_Item] = []
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.batches = 0
        """Batches flushed so far (for tests and metrics)."""

    def submit(self, session: AgentSession, frame: TaskInstanceUpdated | TaskLogChunk) -> None:
        """Queue a frame; it is acked on ``session`` once stored."""
        if isinstance(frame, TaskInstanceUpdated) and frame.data.status.is_final:
            session.on_ended(frame.data.instance_id)  # its slot is free on the agent from now on
        self._pending.append(_Item(session, frame))
        self._ready.set()
        if len(self._pending) >= MAX_PENDING:
            self._room.clear()

    async def wait_room(self) -> None:
        """Return when the queue has room again (readers call this before reading on)."""
        await self._room.wait()

    async def run(self) -> None:
        """Flush batches until cancelled; what is still queued then is flushed once more, best effort."""
        try:
            while True:
                await self._ready.wait()
                await asyncio.sleep(self._window_secs)
                await self._flush_next()
        finally:
            if self._pending:
                await asyncio.shield(self._drain())

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(RETRY_DELAYS_SECS[-1] * 2):
                while self._pending:
                    await self._flush_next()
        except (TimeoutError, HetuflowError):
            logger.warning("%d reports unstored at shutdown; their agents resend them", len(self._pending))

    async def _flush_next(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        if not self._pending:
            self._ready.clear()
        if len(self._pending) < MAX_PENDING:
            self._room.set()
        if batch:
            self.batches += 1
            await self._flush(batch, split_on_failure=True)

    async def _flush(self, batch: list[_Item], *, split_on_failure: bool) -> None:
        error: HetuflowError | None = None
        for delay in (0.0, *RETRY_DELAYS_SECS):
            if delay:
                await asyncio.sleep(delay)
            try:
                await self._store(batch)
                return
            except HetuflowError as exc:
                error = exc
                logger.warning("storing %d agent reports failed: %s", len(batch), exc.detail)
        assert error is not None
        if split_on_failure and len(batch) > 1 and not isinstance(error, DatabaseUnavailable):
            for item in batch:  # isolate the frame the database refuses; the others go through
                await self._flush([item], split_on_failure=False)
            return
        for item in batch:
            if isinstance(error, DatabaseUnavailable):
                item.session.close(CLOSE_TRY_AGAIN, "reports cannot be stored now; reconnect and resend")
            else:
                _ack(item, ok=False, error=f"refused: {error.detail}")

    async def _store(self, batch: list[_Item]) -> None:
        chunks: list[tuple[_Item, TaskLogChunk]] = []
        reports: list[tuple[_Item, TaskInstanceUpdated]] = []
        for item in batch:
            if isinstance(item.frame, TaskLogChunk):
                chunks.append((item, item.frame))
            else:
                reports.append((item, item.frame))
        if chunks:
            await self._service.store_logs(
                [
                    NewLogChunk(
                        instance_id=frame.data.instance_id,
                        stream=frame.data.stream,
                        seq=frame.data.seq,
                        content=frame.data.content,
                        agent_id=item.session.agent_id,  # an agent writes only its own attempts' logs
                    )
                    for item, frame in chunks
                ]
            )
        results: list[ReportResult | None] = []
        if reports:
            results = await self._service.apply_agent_reports(
                [
                    AgentReport(agent_id=item.session.agent_id, msg_id=frame.id, data=frame.data)
                    for item, frame in reports
                ]
            )
        for item, _ in chunks:
            _ack(item, ok=True)
        for (item, _), result in zip(reports, results, strict=True):
            if result is not None and result.outcome is ReportOutcome.REFUSED:
                _ack(item, ok=False, error="not an attempt of this agent, or a state change it cannot make")
            else:
                _ack(item, ok=True)  # applied, a duplicate, or a late report stored beside its attempt
        if self._on_stored is not None:
            touched = {item.frame.data.instance_id for item in batch}
            self._on_stored(touched, [result for result in results if result is not None])


def _ack(item: _Item, *, ok: bool, error: str | None = None) -> None:
    # A closed session cannot carry the ack: the agent resends the frame after reconnecting, applied once.
    with contextlib.suppress(SessionClosed):
        item.session.send(Ack(data=AckData(ack_id=item.frame.id, ok=ok, error=error)))
