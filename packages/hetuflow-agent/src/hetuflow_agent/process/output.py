"""The output of one attempt: log chunks with per-stream sequence numbers, the cap, and the tail.

Pure bookkeeping, no I/O and no clock: bytes go in through ``feed`` as the pipes deliver them, and
ready log chunks come out. A stream's bytes are cut into chunks of ``chunk_bytes``; whatever is left
is sent when the caller's timer calls ``flush``. Both streams together may keep ``max_output_bytes``;
the byte that crosses the cap is where the kept output ends, a marker line is appended to that stream,
and everything after is counted but dropped — the process is never blocked or signalled for it. Bytes
stay bytes: chunks carry them raw, and only the tail of the final report is decoded (with replacement
characters for invalid UTF-8).
"""

from __future__ import annotations

from uuid import UUID

from hetuflow_core.enums import LogStream
from hetuflow_core.protocol import TaskLogChunkData

__all__ = ["OutputBuffer", "truncation_marker"]

_STREAMS = tuple(LogStream)
"""The streams in order (iterating the enum itself is slow, and a buffer is made per attempt)."""
_UTF8_CONTINUATION_MASK = 0xC0
_UTF8_CONTINUATION = 0x80
_MAX_UTF8_CONTINUATIONS = 3


def truncation_marker(limit: int) -> bytes:
    """The line appended where output beyond ``limit`` bytes was dropped."""
    return f"\n[hetuflow: output truncated after {limit} bytes]\n".encode()


class OutputBuffer:
    """Chunks, caps and keeps the tail of one attempt's stdout and stderr."""

    def __init__(
        self, instance_id: UUID, *, max_output_bytes: int, chunk_bytes: int, tail_bytes: int
    ) -> None:
        if max_output_bytes < 0 or chunk_bytes < 1 or tail_bytes < 0:
            raise ValueError("max_output_bytes and tail_bytes must be >= 0, chunk_bytes >= 1")
        self.instance_id = instance_id
        self.max_output_bytes = max_output_bytes
        self.chunk_bytes = chunk_bytes
        self.tail_bytes = tail_bytes
        self.total_bytes = 0
        """Every byte the process wrote, kept or not."""
        self.kept_bytes = 0
        """Bytes within the cap (the marker not counted)."""
        self.truncated = False
        self._pending: dict[LogStream, bytearray] = {stream: bytearray() for stream in _STREAMS}
        self._next_seq: dict[LogStream, int] = dict.fromkeys(_STREAMS, 0)
        self._tail = bytearray()
        self._tail_trimmed = False

    def feed(self, stream: LogStream, data: bytes) -> list[TaskLogChunkData]:
        """Take bytes the process wrote to ``stream``; returns the chunks that are ready to send."""
        self.total_bytes += len(data)
        if self.truncated or not data:
            return []
        room = self.max_output_bytes - self.kept_bytes
        pending = self._pending[stream]
        if len(data) <= room:
            self.kept_bytes += len(data)
            pending += data
            self._keep_tail(data)
            return self._full_chunks(stream)
        kept = data[:room]
        marker = truncation_marker(self.max_output_bytes)
        self.kept_bytes += len(kept)
        self.truncated = True
        pending += kept
        pending += marker
        self._keep_tail(kept)
        self._keep_tail(marker)
        # Nothing more will be kept on any stream, so there is no reason to hold this one back.
        chunks = self._full_chunks(stream)
        last = self.flush(stream)
        if last is not None:
            chunks.append(last)
        return chunks

    def pending(self, stream: LogStream) -> int:
        """Bytes of ``stream`` not yet handed out as a chunk."""
        return len(self._pending[stream])

    def flush(self, stream: LogStream) -> TaskLogChunkData | None:
        """Everything pending on ``stream`` as one chunk (at most ``chunk_bytes``), or None when empty."""
        pending = self._pending[stream]
        if not pending:
            return None
        size = min(len(pending), self.chunk_bytes)
        return self._cut(stream, size)

    def flush_all(self) -> list[TaskLogChunkData]:
        """Every pending byte of both streams, as chunks; used once the pipes are closed."""
        chunks: list[TaskLogChunkData] = []
        for stream in _STREAMS:
            while (chunk := self.flush(stream)) is not None:
                chunks.append(chunk)
        return chunks

    def tail(self) -> str:
        """The last ``tail_bytes`` of the kept output (both streams, in arrival order) as text."""
        data = bytes(self._tail[-self.tail_bytes :]) if self.tail_bytes else b""
        if self._tail_trimmed or len(self._tail) > self.tail_bytes:
            # The cut may have split a UTF-8 sequence; start at the next character instead of
            # showing a replacement character for its stray continuation bytes.
            skip = 0
            while (
                skip < min(len(data), _MAX_UTF8_CONTINUATIONS)
                and data[skip] & _UTF8_CONTINUATION_MASK == _UTF8_CONTINUATION
            ):
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", errors="replace")

    def _full_chunks(self, stream: LogStream) -> list[TaskLogChunkData]:
        chunks: list[TaskLogChunkData] = []
        while len(self._pending[stream]) >= self.chunk_bytes:
            chunks.append(self._cut(stream, self.chunk_bytes))
        return chunks

    def _cut(self, stream: LogStream, size: int) -> TaskLogChunkData:
        pending = self._pending[stream]
        content = bytes(pending[:size])
        del pending[:size]
        seq = self._next_seq[stream]
        self._next_seq[stream] = seq + 1
        return TaskLogChunkData(instance_id=self.instance_id, stream=stream, seq=seq, content=content)

    def _keep_tail(self, data: bytes) -> None:
        if not self.tail_bytes:
            return
        self._tail += data
        # Trim lazily (at twice the size) so a stream of small writes does not shift the buffer each time.
        if len(self._tail) > 2 * self.tail_bytes:
            del self._tail[: len(self._tail) - self.tail_bytes]
            self._tail_trimmed = True
