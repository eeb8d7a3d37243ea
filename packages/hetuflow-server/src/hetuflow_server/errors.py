"""The server's exceptions: the one vocabulary every layer raises and the API turns into problems.

Foreign exceptions (psycopg, jwcrypto, msgspec) are translated into these at exactly one boundary each
(``infra.db`` for the database, ``auth`` for tokens, the API's body decoding for msgspec). Each class
carries a stable ``code`` that becomes the problem ``type`` URI, and the HTTP status it maps to.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "Conflict",
    "DatabaseUnavailable",
    "FieldProblem",
    "Forbidden",
    "HetuflowError",
    "IllegalTransition",
    "InvalidInput",
    "NotFound",
    "Unauthorized",
]


class HetuflowError(Exception):
    """Base of every error the server raises on purpose."""

    code = "error"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class FieldProblem:
    """One invalid field: a JSON path such as ``$.config.timeout_secs`` and why it is wrong."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __repr__(self) -> str:
        return f"FieldProblem({self.path!r}, {self.message!r})"


class InvalidInput(HetuflowError):
    """The request is well-formed but a value is not acceptable (HTTP 422)."""

    code = "invalid-input"
    status = 422
    title = "Invalid input"

    def __init__(self, detail: str, fields: Sequence[FieldProblem] = ()) -> None:
        super().__init__(detail)
        self.fields = list(fields)


class NotFound(HetuflowError):
    """The addressed resource does not exist (HTTP 404)."""

    code = "not-found"
    status = 404
    title = "Not found"

    def __init__(self, resource: str, key: object) -> None:
        super().__init__(f"{resource} {key} not found")
        self.resource = resource
        self.key = key


class Conflict(HetuflowError):
    """The request clashes with stored state, e.g. a duplicate name (HTTP 409)."""

    code = "conflict"
    status = 409
    title = "Conflict"


class IllegalTransition(Conflict):
    """A state change the task or attempt state machine does not allow from its current state (HTTP 409)."""

    code = "illegal-transition"
    title = "Illegal state transition"


class Unauthorized(HetuflowError):
    """No token, or a token that is invalid, expired, revoked or not ours (HTTP 401)."""

    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(HetuflowError):
    """A valid token whose scope does not allow the request (HTTP 403)."""

    code = "forbidden"
    status = 403
    title = "Forbidden"


class DatabaseUnavailable(HetuflowError):
    """PostgreSQL cannot be reached or refused the connection (HTTP 503)."""

    code = "database-unavailable"
    status = 503
    title = "Database unavailable"
