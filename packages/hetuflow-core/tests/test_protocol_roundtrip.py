"""Every protocol frame survives encode → decode unchanged, as bytes and as text."""

from __future__ import annotations

import typing
from uuid import UUID

import msgspec
import pytest
from core_strategies import from_type
from hypothesis import given, settings
from hypothesis import strategies as st

from hetuflow_core import protocol
from hetuflow_core.enums import LogStream, ProtocolErrorCode
from hetuflow_core.protocol import AgentMessage, Message, ServerMessage, decode, encode

FRAME_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(Message)
AGENT_FRAMES = set(typing.get_args(AgentMessage))
SERVER_FRAMES = set(typing.get_args(ServerMessage))


def _tag(frame_type: type[msgspec.Struct]) -> str:
    return str(frame_type.__struct_config__.tag)


def test_the_union_lists_every_frame_class_of_the_module() -> None:
    frames = {
        obj
        for name in protocol.__all__
        if isinstance(obj := getattr(protocol, name), type) and issubclass(obj, protocol._Frame)
    }
    assert frames == set(FRAME_TYPES)
    assert frames == AGENT_FRAMES | SERVER_FRAMES
    assert len({_tag(t) for t in FRAME_TYPES}) == len(FRAME_TYPES)


@pytest.mark.parametrize("frame_type", FRAME_TYPES, ids=_tag)
@settings(max_examples=60)
@given(data=st.data())
def test_frame_round_trips_unchanged(frame_type: type[msgspec.Struct], data: st.DataObject) -> None:
    frame = data.draw(from_type(frame_type))
    wire = encode(frame)
    assert decode(wire) == frame
    assert decode(wire.decode("utf-8")) == frame
    allowed = AgentMessage if frame_type in AGENT_FRAMES else ServerMessage
    assert decode(wire, allowed) == frame


@settings(max_examples=100)
@given(frame=from_type(Message))
def test_envelope_shape_on_the_wire(frame: Message) -> None:
    envelope = msgspec.json.decode(encode(frame))
    assert set(envelope) == {"type", "id", "ts", "data"}
    assert envelope["type"] == _tag(type(frame))
    assert envelope["id"] == frame.id
    assert envelope["ts"] == frame.ts


@pytest.mark.parametrize("frame_type", FRAME_TYPES, ids=_tag)
@settings(max_examples=5)
@given(data=st.data())
def test_a_peer_may_not_send_the_other_sides_frames(
    frame_type: type[msgspec.Struct], data: st.DataObject
) -> None:
    wire = encode(data.draw(from_type(frame_type)))
    for side, frames in ((AgentMessage, AGENT_FRAMES), (ServerMessage, SERVER_FRAMES)):
        if frame_type in frames:
            continue
        with pytest.raises(protocol.ProtocolError) as caught:
            decode(wire, side)
        assert caught.value.code is ProtocolErrorCode.UNKNOWN_TYPE


def test_new_frames_get_fresh_ids_and_timestamps() -> None:
    first = protocol.Ack(data=protocol.AckData(ack_id="a"))
    second = protocol.Ack(data=protocol.AckData(ack_id="a"))
    assert first.id != second.id
    assert len(first.id) == 32
    assert first.ts > 1_600_000_000_000


def test_log_chunk_bytes_travel_as_base64() -> None:
    chunk = protocol.TaskLogChunk(
        data=protocol.TaskLogChunkData(
            instance_id=UUID("0190d3a0-0000-7000-8000-000000000000"),
            stream=LogStream.STDOUT,
            seq=3,
            content=b"\xff\xfe not utf-8 \x00",
        )
    )
    wire = encode(chunk)
    assert b'"content":"//4gbm90IHV0Zi04IAA="' in wire
    assert decode(wire) == chunk
