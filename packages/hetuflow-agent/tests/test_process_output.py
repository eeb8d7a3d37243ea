"""OutputBuffer: chunking, per-stream sequence numbers, the output cap and the decoded tail."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetuflow_agent.process.output import OutputBuffer, truncation_marker
from hetuflow_core.enums import LogStream
from hetuflow_core.protocol import TaskLogChunkData

OUT, ERR = LogStream.STDOUT, LogStream.STDERR


def buffer(*, cap: int = 1_000_000, chunk: int = 8, tail: int = 64) -> OutputBuffer:
    return OutputBuffer(uuid.uuid4(), max_output_bytes=cap, chunk_bytes=chunk, tail_bytes=tail)


def joined(chunks: list[TaskLogChunkData], stream: LogStream) -> bytes:
    return b"".join(c.content for c in chunks if c.stream is stream)


def test_full_chunks_come_out_at_once_and_the_rest_on_flush() -> None:
    out = buffer(chunk=4)
    ready = out.feed(OUT, b"abcdefghij")
    assert [(c.seq, c.content) for c in ready] == [(0, b"abcd"), (1, b"efgh")]
    assert out.pending(OUT) == 2
    rest = out.flush(OUT)
    assert rest is not None
    assert (rest.seq, rest.content) == (2, b"ij")
    assert out.flush(OUT) is None


def test_each_stream_counts_its_own_seq() -> None:
    out = buffer(chunk=2)
    chunks = out.feed(OUT, b"aa") + out.feed(ERR, b"bbbb") + out.feed(OUT, b"cc")
    assert [(c.stream, c.seq) for c in chunks] == [(OUT, 0), (ERR, 0), (ERR, 1), (OUT, 1)]
    assert all(c.instance_id == out.instance_id for c in chunks)


def test_cap_cuts_at_the_exact_byte_adds_a_marker_and_drops_the_rest() -> None:
    out = buffer(cap=10, chunk=100)
    chunks = out.feed(OUT, b"12345678")
    chunks += out.feed(ERR, b"abcdef")  # crosses the cap: "ab" kept, marker follows on stderr
    chunks += out.feed(OUT, b"dropped")
    chunks += out.flush_all()
    assert joined(chunks, OUT) == b"12345678"
    assert joined(chunks, ERR) == b"ab" + truncation_marker(10)
    assert out.truncated
    assert out.kept_bytes == 10
    assert out.total_bytes == 8 + 6 + 7
    assert out.tail().endswith("[hetuflow: output truncated after 10 bytes]\n")


def test_zero_cap_keeps_only_the_marker() -> None:
    out = buffer(cap=0)
    chunks = out.feed(OUT, b"x") + out.feed(OUT, b"y") + out.flush_all()
    assert joined(chunks, OUT) == truncation_marker(0)
    assert out.truncated


def test_output_exactly_at_the_cap_is_not_truncated() -> None:
    out = buffer(cap=4)
    chunks = out.feed(OUT, b"abcd") + out.flush_all()
    assert joined(chunks, OUT) == b"abcd"
    assert not out.truncated


def test_tail_keeps_the_end_in_arrival_order_and_decodes_leniently() -> None:
    out = buffer(tail=8)
    out.feed(OUT, b"0123456789")
    out.feed(ERR, b"ab\xff")
    assert out.tail() == "56789ab\ufffd"


def test_tail_does_not_start_in_the_middle_of_a_character() -> None:
    out = buffer(tail=5)
    out.feed(OUT, "x€€".encode())  # € is three bytes; the last five bytes start inside the first one
    assert out.tail() == "€"


def test_empty_tail_when_disabled() -> None:
    out = buffer(tail=0)
    out.feed(OUT, b"abc")
    assert out.tail() == ""


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk_bytes"):
        buffer(chunk=0)


writes = st.lists(st.tuples(st.sampled_from([OUT, ERR]), st.binary(max_size=40)), max_size=30)


@given(writes=writes, chunk=st.integers(1, 16), cap=st.integers(0, 400))
def test_chunks_reassemble_to_the_kept_bytes(
    writes: list[tuple[LogStream, bytes]], chunk: int, cap: int
) -> None:
    out = buffer(cap=cap, chunk=chunk)
    chunks: list[TaskLogChunkData] = []
    for stream, data in writes:
        chunks += out.feed(stream, data)
    chunks += out.flush_all()
    for stream in LogStream:
        mine = [c for c in chunks if c.stream is stream]
        assert [c.seq for c in mine] == list(range(len(mine)))
        assert all(0 < len(c.content) <= max(chunk, 1) for c in mine)
    # Replaying the writes against the cap gives exactly what the chunks carry.
    room = cap
    expected = {OUT: b"", ERR: b""}
    total = sum(len(data) for _, data in writes)
    for stream, data in writes:
        if room < 0:
            break
        if len(data) > room:
            expected[stream] += data[:room] + truncation_marker(cap)
            room = -1
        else:
            expected[stream] += data
            room -= len(data)
    assert {s: joined(chunks, s) for s in LogStream} == expected
    assert out.truncated == (total > cap)
    assert out.total_bytes == total
