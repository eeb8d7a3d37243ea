"""RFC 9457 problem responses: how every API error reaches the client.

Every error the API answers with is ``application/problem+json`` shaped as ``hetuflow_core.Problem``: a
stable ``type`` URI built from the error's ``code``, the error's ``title``, the HTTP ``status``, a human
``detail``, the request path as ``instance`` and, for validation errors, ``errors`` with the JSON path of each
failing field.

This module also holds the errors that only exist at the HTTP boundary (malformed body, body too large, wrong
content type) and the Starlette exception handlers that turn framework errors (unknown route, wrong method)
and unexpected exceptions into problems as well, so a client never sees a plain-text or HTML API error.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hetuflow_core.api import FieldError, Problem
from hetuflow_server import errors

__all__ = [
    "INTERNAL_ERROR_TYPE",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPE_BASE",
    "BodyTooLarge",
    "MalformedBody",
    "UnsupportedMediaType",
    "error_response",
    "exception_handlers",
    "internal_error_response",
    "problem_for_error",
    "problem_response",
    "problem_type",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://hetuflow.dev/problems/"
INTERNAL_ERROR_TYPE = PROBLEM_TYPE_BASE + "internal-error"
# RFC 9457 §4.2.1: "about:blank" says the problem has no meaning beyond its HTTP status.
_BLANK_TYPE = "about:blank"

_encoder = msgspec.json.Encoder()


class MalformedBody(errors.HetuflowError):
    """The request body is not valid JSON (HTTP 400)."""

    code = "malformed-body"
    status = 400
    title = "Malformed request body"


class BodyTooLarge(errors.HetuflowError):
    """The request body is larger than the API accepts (HTTP 413)."""

    code = "body-too-large"
    status = 413
    title = "Request body too large"


class UnsupportedMediaType(errors.HetuflowError):
    """The request body is not declared as JSON (HTTP 415)."""

    code = "unsupported-media-type"
    status = 415
    title = "Unsupported media type"


def problem_type(code: str) -> str:
    """The stable ``type`` URI of the problem with error code ``code``."""
    return PROBLEM_TYPE_BASE + code


def problem_for_error(exc: errors.HetuflowError, instance: str | None) -> Problem:
    """The problem document describing ``exc`` for the request at path ``instance``."""
    field_errors: list[FieldError] | None = None
    if isinstance(exc, errors.InvalidInput) and exc.fields:
        field_errors = [FieldError(path=field.path, message=field.message) for field in exc.fields]
    return Problem(
        type=problem_type(exc.code),
        title=exc.title,
        status=exc.status,
        detail=exc.detail,
        instance=instance,
        errors=field_errors,
    )


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> Response:
    """Encode ``problem`` as an ``application/problem+json`` response with its status."""
    all_headers = dict(headers or {})
    if problem.status == http.HTTPStatus.UNAUTHORIZED:
        # RFC 9110 §11.6.1: a 401 names the authentication scheme the client should use.
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="hetuflow"')
    elif problem.status == http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        # The unread rest of the body is still on the wire: this connection cannot carry another request.
        all_headers.setdefault("Connection", "close")
    return Response(
        _encoder.encode(problem),
        status_code=problem.status,
        headers=all_headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def error_response(request: Request, exc: errors.HetuflowError) -> Response:
    """The problem response for a deliberate server error raised while handling ``request``."""
    return problem_response(problem_for_error(exc, request.url.path))


def internal_error_response(request: Request, exc: BaseException) -> Response:
    """Log an unexpected exception with its traceback and answer a generic 500 problem.

    The detail never echoes the exception: it may carry SQL, paths or other internals.
    """
    logger.error(
        "unexpected error handling %s %s",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"path": request.url.path, "method": request.method},
    )
    problem = Problem(
        type=INTERNAL_ERROR_TYPE,
        title="Internal server error",
        status=http.HTTPStatus.INTERNAL_SERVER_ERROR,
        detail="The server failed to handle the request; the error has been logged.",
        instance=request.url.path,
    )
    return problem_response(problem)


def _http_exception_problem(request: Request, exc: HTTPException) -> Response:
    """Problems for Starlette's own errors: unknown path (404), method not allowed (405), and others."""
    status = exc.status_code
    phrase = _status_phrase(status)
    if status == http.HTTPStatus.NOT_FOUND:
        type_, detail = problem_type(errors.NotFound.code), f"no resource at {request.url.path}"
    elif status == http.HTTPStatus.METHOD_NOT_ALLOWED:
        type_, detail = (
            problem_type("method-not-allowed"),
            f"{request.method} is not allowed on this resource",
        )
    else:
        type_, detail = _BLANK_TYPE, exc.detail or phrase
    problem = Problem(type=type_, title=phrase, status=status, detail=detail, instance=request.url.path)
    return problem_response(problem, headers=exc.headers)


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _handle_hetuflow_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.HetuflowError)
    return error_response(request, exc)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _http_exception_problem(request, exc)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    return internal_error_response(request, exc)


ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]

# For ``Starlette(exception_handlers=...)``. The API's own endpoints already answer problems for every error
# they raise (see ``operation``); these cover errors raised outside of them: routing (404/405), middleware
# such as the auth guard, and, as the last resort, any unexpected exception (Starlette's
# ServerErrorMiddleware calls the ``Exception`` handler and then re-raises for the ASGI server to log).
exception_handlers: dict[type[Exception] | int, ExceptionHandler] = {
    errors.HetuflowError: _handle_hetuflow_error,
    HTTPException: _handle_http_exception,
    Exception: _handle_unexpected,
}
