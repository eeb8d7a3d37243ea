"""Exceptions of the REST client, and the one function that turns an error reply into one of them.

The hierarchy follows httpx: a base class the caller can catch once, a ``TransportError`` branch for
requests that never got an HTTP reply, and an ``ApiError`` branch carrying the server's RFC 9457
problem document, specialised by status so callers can ``except NotFoundError`` without comparing codes.
Nothing here imports httpx, so the translation is testable without a network stack.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import msgspec

from hetuflow_core.api import Problem

__all__ = [
    "ApiError",
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "HetuflowClientError",
    "NotFoundError",
    "PermissionDeniedError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "api_error",
]

# An error body that is not a problem document (a proxy's HTML page) is quoted up to this length.
_MAX_DETAIL_CHARS: Final = 500
_problem_decoder = msgspec.json.Decoder(Problem)


class HetuflowClientError(Exception):
    """Base of every exception the client raises."""


class TransportError(HetuflowClientError):
    """The request got no HTTP reply: connection refused or reset, DNS, TLS, protocol or URL error."""


class RequestTimeout(TransportError):
    """Connecting, sending or waiting for the reply took longer than the client's timeout."""


class ResponseDecodeError(HetuflowClientError):
    """The server answered with success but the body is not the expected shape (version skew?)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiError(HetuflowClientError):
    """The server refused the request; ``problem`` is its RFC 9457 explanation."""

    def __init__(self, status: int, problem: Problem, *, method: str = "", url: str = "") -> None:
        where = f" ({method} {url})" if method else ""
        super().__init__(f"{status} {problem.title}: {problem.detail}{where}")
        self.status = status
        self.problem = problem
        self.method = method
        self.url = url


class BadRequestError(ApiError):
    """400: the request is malformed (not JSON, bad query parameter)."""


class AuthError(ApiError):
    """401 or 403: the token is missing, invalid, revoked, expired or lacks the scope."""


class AuthenticationError(AuthError):
    """401: no valid token."""


class PermissionDeniedError(AuthError):
    """403: a valid token whose scope does not allow this request."""


class NotFoundError(ApiError):
    """404: no such resource."""


class ConflictError(ApiError):
    """409: the request contradicts stored state (duplicate name, illegal state transition)."""


class ValidationError(ApiError):
    """422: the body or query failed validation; ``problem.errors`` names each bad field."""


class ServerError(ApiError):
    """5xx: the server (or a proxy in front of it) failed, or is not ready."""


_BY_STATUS: Final[dict[int, type[ApiError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
}


def api_error(status: int, content: bytes, *, method: str = "", url: str = "") -> ApiError:
    """The exception for an error reply: its problem document, or one made up from a non-JSON body."""
    try:
        problem = _problem_decoder.decode(content)
    except msgspec.DecodeError:
        problem = Problem(
            type="about:blank",
            title=_reason(status),
            status=status,
            detail=content.decode("utf-8", "replace").strip()[:_MAX_DETAIL_CHARS] or _reason(status),
        )
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, problem, method=method, url=url)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
