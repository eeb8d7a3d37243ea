"""Reading a process's stdout and stderr and batching them into log chunks.

The pipes are read by the event loop itself (``connect_read_pipe``): every read lands in
``OutputBuffer.feed`` synchronously, so the pipes are drained as fast as the process writes whatever
the network does — a process is never blocked on a full pipe, even past the output cap. Chunks that are
ready go to an outbox in order; ``chunks()`` hands them to the one sender of the attempt. A stream's
remainder is flushed ``flush_secs`` after its first unsent byte arrived (a loop timer), so a slow
trickle of output still shows up live in batches rather than byte by byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator
from typing import IO

from hetuflow_agent.process.output import OutputBuffer
from hetuflow_core.enums import LogStream
from hetuflow_core.protocol import TaskLogChunkData

__all__ = ["LogPump"]


class _StreamProtocol(asyncio.Protocol):
    """Feeds one pipe into the pump and tells it when the pipe is closed."""

    def __init__(self, pump: LogPump, stream: LogStream) -> None:
        self._pump = pump
        self._stream = stream

    def data_received(self, data: bytes) -> None:
        self._pump.feed(self._stream, data)

    def eof_received(self) -> bool | None:
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._pump._stream_closed(self._stream)


class LogPump:
    """Owns the pipes and the output buffer of one attempt."""

    def __init__(self, buffer: OutputBuffer, *, flush_secs: float) -> None:
        self.buffer = buffer
        self._flush_secs = flush_secs
        self._loop = asyncio.get_running_loop()
        self._outbox: deque[TaskLogChunkData] = deque()
        self._wakeup = asyncio.Event()
        self._timers: dict[LogStream, asyncio.TimerHandle] = {}
        self._transports: list[asyncio.BaseTransport] = []
        self._open: set[LogStream] = set()
        self._all_closed = asyncio.Event()
        self._finished = False

    async def connect(self, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        """Start reading the two pipes (the pump takes ownership and closes them)."""
        for stream, pipe in ((LogStream.STDOUT, stdout), (LogStream.STDERR, stderr)):
            self._open.add(stream)
            transport, _ = await self._loop.connect_read_pipe(
                functools.partial(_StreamProtocol, self, stream), pipe
            )
            self._transports.append(transport)

    def feed(self, stream: LogStream, data: bytes) -> None:
        """Bytes read from ``stream``: chunk what is full, arm the flush timer for the rest."""
        self._post(self.buffer.feed(stream, data))
        if self.buffer.pending(stream):
            if stream not in self._timers:
                self._timers[stream] = self._loop.call_later(self._flush_secs, self._flush, stream)
        else:
            self._cancel_timer(stream)

    async def wait_closed(self, within_secs: float | None) -> bool:
        """Wait until both pipes reached end of file; False when ``within_secs`` passed first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_closed.wait(), within_secs)
        return self._all_closed.is_set()

    def finish(self) -> None:
        """No more output: close the pipes, send everything pending, and end ``chunks()``."""
        if self._finished:
            return
        self._finished = True
        for transport in self._transports:
            transport.close()
        for stream in list(self._timers):
            self._cancel_timer(stream)
        self._post(self.buffer.flush_all())
        self._wakeup.set()

    async def chunks(self) -> AsyncIterator[TaskLogChunkData]:
        """Every log chunk in order, as it becomes ready; ends after ``finish`` once all were yielded."""
        while True:
            while self._outbox:
                yield self._outbox.popleft()
            if self._finished and not self._outbox:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    def _flush(self, stream: LogStream) -> None:
        self._timers.pop(stream, None)
        chunk = self.buffer.flush(stream)
        if chunk is not None:
            self._post([chunk])

    def _post(self, chunks: list[TaskLogChunkData]) -> None:
        if chunks:
            self._outbox.extend(chunks)
            self._wakeup.set()

    def _cancel_timer(self, stream: LogStream) -> None:
        timer = self._timers.pop(stream, None)
        if timer is not None:
            timer.cancel()

    def _stream_closed(self, stream: LogStream) -> None:
        self._open.discard(stream)
        if not self._open:
            self._all_closed.set()
