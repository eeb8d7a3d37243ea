"""Unit tests of the API's decoding boundary: bodies, query strings, path segments and their problems."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
import pytest
from starlette.requests import Request

from hetuflow_core import JobCreate, TaskStatus, TaskTrigger
from hetuflow_core.types import AgentId
from hetuflow_server import errors
from hetuflow_server.endpoint.api import codec, problems
from hetuflow_server.endpoint.api.params import PageQuery, Timestamp


def make_request(
    body: bytes = b"",
    *,
    content_type: str | None = "application/json",
    query: str = "",
    chunks: Sequence[bytes] | None = None,
    content_length: bool = True,
) -> Request:
    headers: list[tuple[bytes, bytes]] = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if content_length:
        headers.append((b"content-length", str(len(body)).encode()))
    parts = list(chunks) if chunks is not None else [body]
    messages = [
        {"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
        for index, part in enumerate(parts)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/jobs",
        "headers": headers,
        "query_string": query.encode(),
    }
    return Request(scope, receive)


JOB = b'{"name": "nightly", "config": {"command": "bash", "script": "echo hi"}}'


async def test_decodes_a_valid_body() -> None:
    job = await codec.decode_body(make_request(JOB), JobCreate)
    assert job.name == "nightly"
    assert job.config.script == "echo hi"


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        (b'{"config": {"command": "bash"}}', "$.name", "missing required field"),
        (b'{"name": "x", "config": {}}', "$.config.command", "missing required field"),
        (
            b'{"name": "x", "config": {"command": "bash", "timeout_secs": "a"}}',
            "$.config.timeout_secs",
            "Expected",
        ),
        (b'{"name": "x", "config": {"command": "zsh"}}', "$.config.command", "Invalid enum value"),
        (b'{"name": "x", "extra": 1, "config": {"command": "bash"}}', "$.extra", "unknown field"),
        (b'{"name": "x", "config": {"command": "bash", "env": {"1A": "b"}}}', "$.config.env", "regex"),
        (b'{"name": "x", "config": {"command": "bash", "args": ["a", 1]}}', "$.config.args[1]", "Expected"),
        (b"[]", "$", "Expected `object`"),
    ],
)
async def test_validation_errors_name_the_field(body: bytes, path: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        await codec.decode_body(make_request(body), JobCreate)
    [field] = caught.value.fields
    assert field.path == path
    assert fragment in field.message
    assert caught.value.status == 422


@pytest.mark.parametrize("body", [b"{", b'{"name": }', b"\xff\xfe", b'{"name": "\\ud800"}', b"nul"])
async def test_malformed_json_is_a_400(body: bytes) -> None:
    with pytest.raises(problems.MalformedBody) as caught:
        await codec.decode_body(make_request(body), JobCreate)
    assert caught.value.status == 400


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "json"])
async def test_a_body_not_declared_as_json_is_a_415(content_type: str | None) -> None:
    with pytest.raises(problems.UnsupportedMediaType) as caught:
        await codec.decode_body(make_request(JOB, content_type=content_type), JobCreate)
    assert caught.value.status == 415


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"]
)
async def test_json_media_types_with_parameters_are_accepted(content_type: str) -> None:
    job = await codec.decode_body(make_request(JOB, content_type=content_type), JobCreate)
    assert job.name == "nightly"


async def test_declared_oversized_body_is_refused_before_reading() -> None:
    request = make_request(b"", content_length=False)
    request.scope["headers"].append((b"content-length", str(codec.MAX_BODY_BYTES + 1).encode()))
    with pytest.raises(problems.BodyTooLarge) as caught:
        await codec.decode_body(request, JobCreate)
    assert caught.value.status == 413


async def test_streamed_oversized_body_is_refused() -> None:
    chunk = b" " * (256 * 1024)
    request = make_request(chunks=[chunk] * 5, content_length=False)
    with pytest.raises(problems.BodyTooLarge):
        await codec.decode_body(request, JobCreate)


async def test_optional_body_may_be_empty() -> None:
    trigger = await codec.decode_body(make_request(b"", content_type=None), TaskTrigger, optional=True)
    assert trigger == TaskTrigger()


async def test_empty_required_body_is_malformed() -> None:
    with pytest.raises(problems.MalformedBody):
        await codec.decode_body(make_request(b""), JobCreate)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"name": "x", "description": "a\\u0000b", "config": {"command": "bash"}}', "$.description"),
        (b'{"name": "x", "config": {"command": "bash", "args": ["ok", "\\u0000"]}}', "$.config.args[1]"),
        (b'{"parameters": {"k": {"deep": "\\u0000"}}}', "$.parameters.k.deep"),
        (b'{"parameters": {"k\\u0000": 1}}', "$.parameters"),
    ],
)
async def test_nul_characters_are_refused_with_their_path(body: bytes, path: str) -> None:
    type_: Any = TaskTrigger if b"parameters" in body else JobCreate
    with pytest.raises(errors.InvalidInput) as caught:
        await codec.decode_body(make_request(body), type_)
    assert caught.value.fields[0].path == path


async def test_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    trigger = await codec.decode_body(make_request(b'{"parameters": {"k": "\\\\u0000"}}'), TaskTrigger)
    assert trigger.parameters == {"k": "\\u0000"}


def _nested_parameters(depth: int) -> bytes:
    # The body itself and "parameters" are two levels; the value under "k" makes up the rest.
    inner = depth - 2
    return b'{"parameters": {"k": ' + b"[" * inner + b'"[{ in a string }]"' + b"]" * inner + b"}}"


async def test_nesting_up_to_the_limit_is_accepted() -> None:
    body = _nested_parameters(codec.MAX_NESTING_DEPTH)
    trigger = await codec.decode_body(make_request(body), TaskTrigger)
    assert "k" in trigger.parameters


@pytest.mark.parametrize("depth", [codec.MAX_NESTING_DEPTH + 1, 900, 5000, 200_000])
async def test_deeper_nesting_is_refused_as_invalid_input(depth: int) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        await codec.decode_body(make_request(_nested_parameters(depth)), TaskTrigger)
    assert caught.value.fields[0].path == "$"
    assert "nested more than" in caught.value.detail


async def test_many_shallow_objects_are_not_deep() -> None:
    body = b'{"parameters": {"k": [' + b",".join([b'{"a": [1]}'] * 5000) + b"]}}"
    trigger = await codec.decode_body(make_request(body), TaskTrigger)
    assert len(trigger.parameters["k"]) == 5000


class ListQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    status: list[TaskStatus] = []
    job_id: UUID | None = None
    after: Timestamp | None = None
    agent_id: AgentId | None = None


def test_query_parameters_are_converted() -> None:
    job_id = "0190a0f0-0000-7000-8000-000000000000"
    request = make_request(
        query=f"status=failed&status=pending&job_id={job_id}&after=2024-01-02T03:04:05Z&limit=5&cursor=abc"
    )
    query = codec.decode_query(request, ListQuery)
    assert query.status == [TaskStatus.FAILED, TaskStatus.PENDING]
    assert query.job_id == UUID(job_id)
    assert query.after == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (query.limit, query.cursor) == (5, "abc")


def test_query_defaults() -> None:
    query = codec.decode_query(make_request(), ListQuery)
    assert (query.status, query.limit, query.cursor, query.job_id) == ([], 100, None, None)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("job_id=nope", "job_id"),
        ("status=bogus", "status"),
        ("status=failed&status=bogus", "status"),
        ("after=yesterday", "after"),
        ("after=2024-01-02T03:04:05", "after"),  # no offset: ambiguous, refused
        ("limit=1&limit=2", "limit"),
        ("colour=red", "colour"),
        ("agent_id=a%00b", "agent_id"),
        ("cursor=", "cursor"),
    ],
)
def test_bad_query_parameters_are_named(query: str, parameter: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        codec.decode_query(make_request(query=query), ListQuery)
    assert caught.value.fields[0].path == f"$.{parameter}"
    assert parameter in caught.value.detail


@pytest.mark.parametrize(
    "raw", ["nope", "0190a0f0-0000-7000-8000", "", "0190a0f0-0000-7000-8000-00000000000\x00"]
)
def test_path_segment_that_cannot_be_an_id_is_not_found(raw: str) -> None:
    with pytest.raises(errors.NotFound) as caught:
        codec.decode_path_value(raw, UUID, "job")
    assert caught.value.status == 404
    assert "job" in caught.value.detail


def test_path_segment_is_converted() -> None:
    raw = "0190A0F0-0000-7000-8000-000000000000"
    assert codec.decode_path_value(raw, UUID, "job") == UUID(raw)
    assert codec.decode_path_value("worker-1", AgentId, "agent") == "worker-1"
    with pytest.raises(errors.NotFound):
        codec.decode_path_value("bad agent!", AgentId, "agent")


def test_json_response_uses_msgspec() -> None:
    response = codec.json_response({"at": datetime(2024, 1, 1, tzinfo=UTC)}, 201, {"Location": "/x"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["location"] == "/x"
    assert msgspec.json.decode(response.body) == {"at": "2024-01-01T00:00:00Z"}


def test_list_field_detection() -> None:
    class Q(msgspec.Struct):
        a: list[int] = []
        b: Annotated[list[int], msgspec.Meta(max_length=3)] | None = None
        c: int | None = None

    request = make_request(query="a=1&a=2&b=3&b=4")
    assert codec.decode_query(request, Q) == Q(a=[1, 2], b=[3, 4])
