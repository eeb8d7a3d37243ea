"""Unit tests of problem documents: types, statuses, field errors and the Starlette exception handlers."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hetuflow_core.api import Problem
from hetuflow_server import errors
from hetuflow_server.endpoint.api import problems


def make_request(path: str = "/api/v1/jobs/x", method: str = "GET") -> Request:
    return Request({"type": "http", "method": method, "path": path, "headers": [], "query_string": b""})


def decode(response: Response) -> Problem:
    assert response.headers["content-type"] == "application/problem+json"
    problem = msgspec.json.decode(response.body, type=Problem)
    assert problem.status == response.status_code
    return problem


@pytest.mark.parametrize(
    ("exc", "status", "type_"),
    [
        (errors.NotFound("job", "abc"), 404, "not-found"),
        (errors.Conflict("duplicate"), 409, "conflict"),
        (errors.IllegalTransition("succeeded task"), 409, "illegal-transition"),
        (errors.InvalidInput("bad"), 422, "invalid-input"),
        (errors.Unauthorized("no token"), 401, "unauthorized"),
        (errors.Forbidden("read token"), 403, "forbidden"),
        (errors.DatabaseUnavailable("down"), 503, "database-unavailable"),
        (problems.MalformedBody("nope"), 400, "malformed-body"),
        (problems.BodyTooLarge("big"), 413, "body-too-large"),
        (problems.UnsupportedMediaType("xml"), 415, "unsupported-media-type"),
    ],
)
async def test_errors_become_problems(exc: errors.HetuflowError, status: int, type_: str) -> None:
    response = await problems.exception_handlers[errors.HetuflowError](make_request(), exc)
    problem = decode(response)
    assert problem.status == status
    assert problem.type == f"https://hetuflow.dev/problems/{type_}"
    assert problem.title == exc.title
    assert problem.detail == exc.detail
    assert problem.instance == "/api/v1/jobs/x"
    assert problem.errors is None
    assert ("www-authenticate" in response.headers) == (status == 401)


def test_field_problems_are_listed() -> None:
    exc = errors.InvalidInput(
        "two fields", [errors.FieldProblem("$.name", "too long"), errors.FieldProblem("limit", "too big")]
    )
    problem = decode(problems.error_response(make_request(), exc))
    assert problem.errors is not None
    assert [(e.path, e.message) for e in problem.errors] == [("$.name", "too long"), ("limit", "too big")]
    body: dict[str, Any] = msgspec.json.decode(problems.error_response(make_request(), exc).body)
    assert body["errors"][0] == {"path": "$.name", "message": "too long"}


async def test_unknown_route_is_a_not_found_problem() -> None:
    handler = problems.exception_handlers[HTTPException]
    problem = decode(await handler(make_request("/api/v1/nothing"), HTTPException(404)))
    assert problem.type == "https://hetuflow.dev/problems/not-found"
    assert problem.instance == "/api/v1/nothing"


async def test_wrong_method_keeps_the_allow_header() -> None:
    handler = problems.exception_handlers[HTTPException]
    response = await handler(make_request(method="PUT"), HTTPException(405, headers={"Allow": "GET, PATCH"}))
    problem = decode(response)
    assert problem.type == "https://hetuflow.dev/problems/method-not-allowed"
    assert response.headers["allow"] == "GET, PATCH"
    assert "PUT" in problem.detail


async def test_other_http_errors_are_blank_problems() -> None:
    handler = problems.exception_handlers[HTTPException]
    problem = decode(await handler(make_request(), HTTPException(400, "bad host")))
    assert (problem.type, problem.title, problem.detail) == ("about:blank", "Bad Request", "bad host")


async def test_unexpected_errors_are_logged_and_hidden(caplog: pytest.LogCaptureFixture) -> None:
    handler = problems.exception_handlers[Exception]
    secret = RuntimeError("SELECT password FROM secrets")
    with caplog.at_level(logging.ERROR, logger=problems.__name__):
        problem = decode(await handler(make_request(), secret))
    assert problem.status == 500
    assert problem.type == problems.INTERNAL_ERROR_TYPE
    assert "password" not in problem.detail
    [record] = caplog.records
    assert record.exc_info is not None
    assert record.exc_info[1] is secret
