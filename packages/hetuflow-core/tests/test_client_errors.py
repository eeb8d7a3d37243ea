"""Every way a call can fail surfaces as one ``HetuflowClientError`` subclass, never as an httpx error."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import msgspec
import pytest

from hetuflow_core import CommandKind, FieldError, JobConfig, JobCreate, Problem
from hetuflow_core.client import (
    ApiError,
    AsyncClient,
    AuthenticationError,
    AuthError,
    BadRequestError,
    Client,
    ConflictError,
    HetuflowClientError,
    NotFoundError,
    PermissionDeniedError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    TransportError,
    ValidationError,
)

JOB = "0190d3a0-0000-7000-8000-000000000001"
Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler) -> Client:
    return Client("http://hetuflow.test", "t", transport=httpx.MockTransport(handler))


def reply(status: int, content: bytes, content_type: str = "application/problem+json") -> Handler:
    return lambda request: httpx.Response(status, content=content, headers={"content-type": content_type})


def problem(status: int, title: str, detail: str) -> Problem:
    return Problem(
        type=f"https://hetuflow.dev/problems/{title.lower()}", title=title, status=status, detail=detail
    )


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, ValidationError),
        (418, ApiError),
        (429, ApiError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_problem_bodies_become_typed_errors(status: int, exc_type: type[ApiError]) -> None:
    body = problem(status, "Nope", f"refused with {status}")
    with client_for(reply(status, msgspec.json.encode(body))) as client, pytest.raises(ApiError) as caught:
        client.get_job(JOB)
    error = caught.value
    assert type(error) is exc_type
    assert isinstance(error, HetuflowClientError)
    assert error.status == status
    assert error.problem == body
    assert (error.method, error.url) == ("GET", f"http://hetuflow.test/api/v1/jobs/{JOB}")
    assert str(error) == f"{status} Nope: refused with {status} (GET http://hetuflow.test/api/v1/jobs/{JOB})"


def test_auth_errors_share_a_base() -> None:
    assert issubclass(AuthenticationError, AuthError)
    assert issubclass(PermissionDeniedError, AuthError)


def test_validation_problem_keeps_field_errors() -> None:
    body = Problem(
        type="https://hetuflow.dev/problems/validation",
        title="Invalid request",
        status=422,
        detail="1 invalid field",
        errors=[FieldError(path="$.config.timeout_secs", message="Expected `float` > 0")],
    )
    with (
        client_for(reply(422, msgspec.json.encode(body))) as client,
        pytest.raises(ValidationError) as caught,
    ):
        client.create_job(JobCreate(name="x", config=JobConfig(command=CommandKind.BASH)))
    assert caught.value.problem.errors == body.errors


@pytest.mark.parametrize(
    ("status", "content", "content_type", "exc_type", "title", "detail"),
    [
        (
            502,
            b"<html><body>Bad gateway</body></html>",
            "text/html",
            ServerError,
            "Bad Gateway",
            "<html><body>Bad",
        ),
        (404, b"", "text/plain", NotFoundError, "Not Found", "Not Found"),
        (
            409,
            b'{"error": "duplicate"}',
            "application/json",
            ConflictError,
            "Conflict",
            '{"error": "duplicate"}',
        ),
        (
            400,
            b"\xff\xfe garbage",
            "application/octet-stream",
            BadRequestError,
            "Bad Request",
            "\ufffd\ufffd garbage",
        ),
        (599, b"?", "text/plain", ServerError, "HTTP 599", "?"),
        (302, b"", "text/plain", ApiError, "Found", "Found"),
        (401, b"x" * 10_000, "text/plain", AuthenticationError, "Unauthorized", "x" * 500),
    ],
)
def test_error_bodies_that_are_not_problems(
    status: int, content: bytes, content_type: str, exc_type: type[ApiError], title: str, detail: str
) -> None:
    with client_for(reply(status, content, content_type)) as client, pytest.raises(ApiError) as caught:
        client.list_jobs()
    error = caught.value
    assert type(error) is exc_type
    assert error.status == status
    assert error.problem.type == "about:blank"
    assert error.problem.title == title
    assert error.problem.status == status
    assert error.problem.detail.startswith(detail)
    assert len(error.problem.detail) <= 500


@pytest.mark.parametrize(
    "content",
    [b"<html>ok</html>", b'{"id": "not-a-job"}', b"", b'{"items": [{"bogus": 1}], "next_cursor": null}'],
)
def test_a_success_body_of_the_wrong_shape(content: bytes) -> None:
    with (
        client_for(reply(200, content, "application/json")) as client,
        pytest.raises(ResponseDecodeError) as caught,
    ):
        client.list_jobs()
    assert caught.value.status == 200
    assert "GET http://hetuflow.test/api/v1/jobs" in str(caught.value)
    assert isinstance(caught.value, HetuflowClientError)


@pytest.mark.parametrize(
    ("raised", "exc_type"),
    [
        (httpx.ConnectError("refused"), TransportError),
        (httpx.ReadError("reset"), TransportError),
        (httpx.RemoteProtocolError("bad framing"), TransportError),
        (httpx.ConnectTimeout("slow"), RequestTimeout),
        (httpx.ReadTimeout("slow"), RequestTimeout),
        (httpx.PoolTimeout("busy"), RequestTimeout),
    ],
)
def test_transport_failures_are_wrapped(raised: httpx.HTTPError, exc_type: type[TransportError]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise raised

    with client_for(handle) as client, pytest.raises(TransportError) as caught:
        client.healthz()
    assert type(caught.value) is exc_type
    assert caught.value.__cause__ is raised


def test_connection_refused_on_a_real_socket() -> None:
    with socket.socket() as sock:  # bind then close: a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", timeout=5.0) as client, pytest.raises(TransportError) as caught:
        client.healthz()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_real_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with Client(url, timeout=0.2) as client, pytest.raises(RequestTimeout):
            client.readyz()


@pytest.mark.parametrize("base_url", ["ftp://hetuflow.test", "hetuflow.test:8080"])
def test_unusable_base_url(base_url: str) -> None:
    with Client(base_url) as client, pytest.raises(TransportError):
        client.healthz()


def test_async_client_translates_the_same_way() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/missing"):
            raise httpx.ConnectError("refused")
        return httpx.Response(404, content=msgspec.json.encode(problem(404, "Missing", "no job")))

    async def run() -> tuple[HetuflowClientError, HetuflowClientError]:
        async with AsyncClient("http://hetuflow.test", "t", transport=httpx.MockTransport(handle)) as client:
            with pytest.raises(NotFoundError) as not_found:
                await client.get_job(JOB)
            with pytest.raises(TransportError) as transport:
                await client.get_job("missing")
        return not_found.value, transport.value

    not_found, transport = asyncio.run(run())
    assert isinstance(not_found, NotFoundError)
    assert not_found.problem.detail == "no job"
    assert isinstance(transport.__cause__, httpx.ConnectError)
