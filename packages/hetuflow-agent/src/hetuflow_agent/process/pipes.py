"""Reading a process's stdout and stderr and batching them into log chunks.

The pipes are read by the event loop itself: each read end is watched (``watcher.FdWatcher``) and every
read lands in ``OutputBuffer.feed`` synchronously, so the pipes are drained as fast as the process
writes whatever the network does — a process is never blocked on a full pipe, even past the output cap.
(Plain readers rather than asyncio pipe transports: a transport costs several loop callbacks and a
future to set up per pipe, two per attempt, and gives nothing the pump needs.) Chunks that are ready go
to an outbox in order; ``chunks()`` hands them to the one sender of the attempt, which ``when_output``
lets the attempt create only once there is something to send. A stream's remainder
is flushed ``flush_secs`` after its first unsent byte arrived (a loop timer), so a slow trickle of
output still shows up live in batches rather than byte by byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Final

from hetuflow_agent.process.output import OutputBuffer
from hetuflow_agent.process.watcher import watcher_for
from hetuflow_core.enums import LogStream
from hetuflow_core.protocol import TaskLogChunkData

__all__ = ["LogPump"]

_READ_BYTES: Final = 65_536
"""Largest single read; one log chunk by default, and small enough to stay off ``mmap`` allocations."""


class LogPump:
    """Owns the pipes and the output buffer of one attempt."""

    def __init__(self, buffer: OutputBuffer, *, flush_secs: float) -> None:
        self.buffer = buffer
        self._flush_secs = flush_secs
        self._loop = asyncio.get_running_loop()
        self._watcher = watcher_for(self._loop)
        self._outbox: deque[TaskLogChunkData] = deque()
        # Made when first needed: most attempts print nothing, and their pipes are closed before
        # anyone waits for that.
        self._wakeup: asyncio.Event | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self._timers: dict[LogStream, asyncio.TimerHandle] = {}
        self._fds: dict[LogStream, int] = {}
        self._finished = False
        self._on_output: Callable[[], None] | None = None

    def connect(self, stdout: int, stderr: int) -> None:
        """Start reading the two pipes' non-blocking read ends (the pump takes ownership and closes them)."""
        for stream, fd in ((LogStream.STDOUT, stdout), (LogStream.STDERR, stderr)):
            self._fds[stream] = fd
            self._watcher.add(fd, functools.partial(self._on_readable, stream, fd))

    def when_output(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, as soon as a chunk is ready (now, if one already is)."""
        if self._outbox:
            callback()
        else:
            self._on_output = callback

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
        if self._fds:
            if self._closed_waiter is None:
                self._closed_waiter = self._loop.create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_secs):
                    await asyncio.shield(self._closed_waiter)
        return not self._fds

    def finish(self) -> None:
        """No more output: close the pipes, send everything pending, and end ``chunks()``."""
        if self._finished:
            return
        self._finished = True
        for stream in list(self._fds):
            self._close(stream)
        for stream in list(self._timers):
            self._cancel_timer(stream)
        self._post(self.buffer.flush_all())
        if self._wakeup is not None:
            self._wakeup.set()

    async def chunks(self) -> AsyncIterator[TaskLogChunkData]:
        """Every log chunk in order, as it becomes ready; ends after ``finish`` once all were yielded."""
        while True:
            while self._outbox:
                yield self._outbox.popleft()
            if self._finished and not self._outbox:
                return
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
            await self._wakeup.wait()

    def _on_readable(self, stream: LogStream, fd: int) -> None:
        try:
            data = os.read(fd, _READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return  # nothing after all; the loop calls again when there is
        except OSError:
            data = b""  # a broken pipe ends the stream like end of file
        if data:
            self.feed(stream, data)
        else:
            self._close(stream)

    def _close(self, stream: LogStream) -> None:
        fd = self._fds.pop(stream, None)
        if fd is None:
            return
        self._watcher.remove(fd)
        os.close(fd)
        if not self._fds and self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    def _flush(self, stream: LogStream) -> None:
        self._timers.pop(stream, None)
        chunk = self.buffer.flush(stream)
        if chunk is not None:
            self._post([chunk])

    def _post(self, chunks: list[TaskLogChunkData]) -> None:
        if chunks:
            self._outbox.extend(chunks)
            if self._wakeup is not None:
                self._wakeup.set()
            callback, self._on_output = self._on_output, None
            if callback is not None:
                callback()

    def _cancel_timer(self, stream: LogStream) -> None:
        timer = self._timers.pop(stream, None)
        if timer is not None:
            timer.cancel()
