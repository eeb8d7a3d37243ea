"""Anything that is not a valid frame makes ``decode`` raise ``ProtocolError`` — and nothing else."""

from __future__ import annotations

import random
import typing
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from core_strategies import from_type, json_values
from hypothesis import given, settings
from hypothesis import strategies as st

from hetuflow_core.enums import ProtocolErrorCode
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_FRAME_BYTES,
    Ack,
    AckData,
    Error,
    Message,
    ProtocolError,
    decode,
    encode,
)

FRAME_TYPES = typing.get_args(Message)
TAGS = [str(t.__struct_config__.tag) for t in FRAME_TYPES]
VALID_ACK = b'{"type":"ack","id":"m1","ts":1,"data":{"ack_id":"a1"}}'


def decode_or_refuse(frame: bytes | str) -> ProtocolError | None:
    """Decode ``frame``; a ``ProtocolError`` is returned, any other exception fails the test."""
    try:
        result = decode(frame)
    except ProtocolError as exc:
        error = exc
    else:
        assert isinstance(result, FRAME_TYPES)
        return None
    assert isinstance(error.code, ProtocolErrorCode)
    assert 0 < len(error.message) <= MAX_ERROR_MESSAGE_CHARS
    reply = error.to_frame()
    assert decode(encode(reply)) == reply  # the error frame sent back is itself valid
    return error


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes(frame: bytes) -> None:
    decode_or_refuse(frame)


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=200))
def test_random_text_including_lone_surrogates(frame: str) -> None:
    decode_or_refuse(frame)


@settings(max_examples=300)
@given(json_values)
def test_random_json_values_are_never_frames(value: Any) -> None:
    assert decode_or_refuse(msgspec.json.encode(value)) is not None


@settings(max_examples=300)
@given(tag=st.sampled_from(TAGS), data=json_values, extra=st.dictionaries(st.text(max_size=8), json_values))
def test_known_type_with_random_data(tag: str, data: Any, extra: dict[str, Any]) -> None:
    decode_or_refuse(msgspec.json.encode({**extra, "type": tag, "id": "x", "data": data}))


# ------------------------------------------------------------------ mutations of valid frames


def _json_kinds(info: mi.Type) -> set[str]:
    """The JSON kinds a field of this type accepts."""
    if isinstance(info, mi.Metadata):
        return _json_kinds(info.type)
    if isinstance(info, mi.UnionType):
        return set().union(*(_json_kinds(t) for t in info.types))
    kinds: dict[type[mi.Type], set[str]] = {
        mi.StrType: {"string"},
        mi.UUIDType: {"string"},
        mi.DateTimeType: {"string"},
        mi.EnumType: {"string"},
        mi.LiteralType: {"string"},
        mi.BytesType: {"string"},
        mi.IntType: {"integer"},
        mi.FloatType: {"integer", "number"},
        mi.BoolType: {"boolean"},
        mi.NoneType: {"null"},
        mi.StructType: {"object"},
        mi.DictType: {"object"},
        mi.ListType: {"array"},
        mi.AnyType: {"string", "integer", "number", "boolean", "null", "object", "array"},
    }
    return kinds[type(info)]


_SAMPLES = {
    "string": "s",
    "integer": 7,
    "number": 0.5,
    "boolean": True,
    "null": None,
    "object": {},
    "array": [],
}


def _struct_fields(
    cls: type[msgspec.Struct], path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    """(path, field) for every field of ``cls`` and of the Structs nested in it directly."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    found = []
    for field in info.fields:
        if field.encode_name == "type" and path == ():
            continue
        found.append(((*path, field.encode_name), field))
        nested = field.type.type if isinstance(field.type, mi.Metadata) else field.type
        if isinstance(nested, mi.StructType):
            found.extend(_struct_fields(nested.cls, (*path, field.encode_name)))
    return found


def _parent(envelope: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = envelope
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


@settings(max_examples=250)
@given(frame=from_type(Message), pick=st.randoms(use_true_random=False))
def test_a_value_of_the_wrong_json_type_is_refused(frame: msgspec.Struct, pick: random.Random) -> None:
    envelope = msgspec.to_builtins(frame)
    path, field = pick.choice(_struct_fields(type(frame)))
    parent = _parent(envelope, path)
    wrong = sorted(set(_SAMPLES) - _json_kinds(field.type))
    if parent is None or not wrong:
        return  # an optional parent Struct is null in this example, or the field takes any JSON
    parent[path[-1]] = _SAMPLES[pick.choice(wrong)]
    error = decode_or_refuse(msgspec.json.encode(envelope))
    assert error is not None
    assert error.code is ProtocolErrorCode.INVALID
    assert error.ref_id == (envelope["id"] if path != ("id",) else None)


@settings(max_examples=250)
@given(frame=from_type(Message), pick=st.randoms(use_true_random=False))
def test_a_missing_required_field_is_refused(frame: msgspec.Struct, pick: random.Random) -> None:
    envelope = msgspec.to_builtins(frame)
    required = [(path, f) for path, f in _struct_fields(type(frame)) if f.required]
    path, _ = pick.choice(required)  # every frame requires at least ``data``
    parent = _parent(envelope, path)
    if parent is None:
        return
    del parent[path[-1]]
    error = decode_or_refuse(msgspec.json.encode(envelope))
    assert error is not None
    assert error.code is ProtocolErrorCode.INVALID
    assert "missing required field" in error.message


# ------------------------------------------------------------------ specific hostile frames


def _ack_with(ts: str) -> bytes:
    return VALID_ACK.replace(b'"ts":1', b'"ts":' + ts.encode())


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b"", ProtocolErrorCode.MALFORMED, id="empty"),
        pytest.param(b"   ", ProtocolErrorCode.MALFORMED, id="whitespace"),
        pytest.param(b"\xef\xbb\xbf" + VALID_ACK, ProtocolErrorCode.MALFORMED, id="utf8-bom"),
        pytest.param(VALID_ACK[:-1], ProtocolErrorCode.MALFORMED, id="truncated"),
        pytest.param(VALID_ACK + b"{}", ProtocolErrorCode.MALFORMED, id="trailing-data"),
        pytest.param(VALID_ACK.replace(b"a1", b"a\xff1"), ProtocolErrorCode.MALFORMED, id="invalid-utf8"),
        pytest.param(
            VALID_ACK.replace(b"a1", b"a\xed\xa0\x80"), ProtocolErrorCode.MALFORMED, id="utf8-surrogate"
        ),
        pytest.param(_ack_with("NaN"), ProtocolErrorCode.MALFORMED, id="nan-literal"),
        pytest.param(_ack_with("Infinity"), ProtocolErrorCode.MALFORMED, id="infinity-literal"),
        pytest.param(_ack_with("9" * 400), ProtocolErrorCode.INVALID, id="huge-int"),
        pytest.param(_ack_with("-1"), ProtocolErrorCode.INVALID, id="negative-ts"),
        pytest.param(_ack_with("1e400"), ProtocolErrorCode.INVALID, id="number-out-of-range"),
        pytest.param(_ack_with("1.5"), ProtocolErrorCode.INVALID, id="float-for-int"),
        pytest.param(_ack_with('"1"'), ProtocolErrorCode.INVALID, id="string-for-int"),
        pytest.param(b"null", ProtocolErrorCode.INVALID, id="null"),
        pytest.param(b"[" * 100_000, ProtocolErrorCode.INVALID, id="deep-array-at-top"),
        pytest.param(b'{"id":"m1","data":{}}', ProtocolErrorCode.INVALID, id="no-type"),
        pytest.param(b'{"type":"ack","id":"m1"}', ProtocolErrorCode.INVALID, id="no-data"),
        pytest.param(
            b'{"type":"nope","id":"m1","data":{}}', ProtocolErrorCode.UNKNOWN_TYPE, id="unknown-type"
        ),
        pytest.param(b'{"type":"ACK","id":"m1","data":{}}', ProtocolErrorCode.UNKNOWN_TYPE, id="tag-case"),
        pytest.param(b'{"type":7,"id":"m1","data":{}}', ProtocolErrorCode.INVALID, id="numeric-type"),
        pytest.param(VALID_ACK.replace(b'"m1"', b'""'), ProtocolErrorCode.INVALID, id="empty-id"),
    ],
)
def test_hostile_frame(frame: bytes, code: ProtocolErrorCode) -> None:
    error = decode_or_refuse(frame)
    assert error is not None
    assert error.code is code


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_parameters(depth: int) -> None:
    frame = (
        b'{"type":"task.dispatch","id":"m1","data":{"parameters":'
        + b'{"a":' * depth
        + b"1"
        + b"}" * depth
        + b"}}"
    )
    error = decode_or_refuse(frame)
    assert error is not None
    assert error.code is ProtocolErrorCode.MALFORMED


def test_lone_surrogate_in_text_input() -> None:
    error = decode_or_refuse(VALID_ACK.decode().replace("a1", "a\ud800"))
    assert error is not None
    assert error.code is ProtocolErrorCode.MALFORMED


@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "text"])
def test_16_mib_frame_is_refused_before_parsing(as_text: bool) -> None:
    chunk = b'{"type":"instance.log","id":"m1","data":{"content":"' + b"A" * (16 * 1024 * 1024) + b'"}}'
    frame: bytes | str = chunk.decode() if as_text else chunk
    error = decode_or_refuse(frame)
    assert error is not None
    assert error.code is ProtocolErrorCode.TOO_LARGE
    assert error.ref_id is None


def test_size_limit_counts_utf8_bytes_and_is_configurable() -> None:
    frame = VALID_ACK.decode().replace("a1", "é" * 20)  # 20 characters, 40 bytes
    assert isinstance(decode(frame, max_bytes=len(frame.encode())), Ack)
    with pytest.raises(ProtocolError) as caught:
        decode(frame, max_bytes=len(frame) + 1)
    assert caught.value.code is ProtocolErrorCode.TOO_LARGE
    assert MAX_FRAME_BYTES == 4 * 1024 * 1024


def test_a_huge_offending_value_gives_a_short_message_and_a_valid_error_frame() -> None:
    error = decode_or_refuse(b'{"type":"' + b"x" * 100_000 + b'","id":"m1","data":{}}')
    assert error is not None
    assert error.code is ProtocolErrorCode.UNKNOWN_TYPE
    assert error.ref_id == "m1"
    reply = error.to_frame()
    assert isinstance(reply, Error)
    assert reply.data.ref_id == "m1"
    assert len(reply.data.message) == MAX_ERROR_MESSAGE_CHARS


def test_an_unusable_id_is_not_echoed() -> None:
    error = decode_or_refuse(b'{"type":"ack","id":"' + b"i" * 65 + b'","data":{"ack_id":"a"}}')
    assert error is not None
    assert error.ref_id is None


def test_valid_ack_decodes() -> None:
    assert decode(VALID_ACK) == Ack(id="m1", ts=1, data=AckData(ack_id="a1"))


@pytest.mark.parametrize("at", ["2024-03-10T01:30:00", "2024-03-10 01:30:00", "2024-03-10", "yesterday"])
def test_datetimes_must_name_an_instant(at: str) -> None:
    frame = {
        "type": "instance.updated",
        "id": "m1",
        "data": {"instance_id": str(uuid7()), "task_id": str(uuid7()), "status": "running", "at": at},
    }
    error = decode_or_refuse(msgspec.json.encode(frame))
    assert error is not None
    assert error.code is ProtocolErrorCode.INVALID
    assert "$.data.at" in error.message
