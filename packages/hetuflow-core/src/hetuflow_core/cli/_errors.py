"""What can make a ``hetuflow`` command fail, and the one place client errors become one-line messages.

Commands raise `Failure` (exit status 1) or `Usage` (exit status 2) with the line to show; everything the
REST client raises is turned into such a line by `describe`, so the user sees ``401``, ``403`` or ``422
$.config.timeout_secs: ...`` in words instead of a traceback.
"""

from __future__ import annotations

from hetuflow_core.client import (
    ApiError,
    AuthenticationError,
    HetuflowClientError,
    PermissionDeniedError,
    RequestTimeout,
    TransportError,
    ValidationError,
)

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "Failure", "Usage", "describe"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class Failure(Exception):
    """A command could not do its job; the message is the one line shown (exit status 1 by default)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Usage(Failure):
    """The command line itself is wrong (exit status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def describe(exc: HetuflowClientError, server: str) -> str:
    """One line saying what went wrong with a request to ``server`` and, when it helps, what to do."""
    if isinstance(exc, RequestTimeout):
        return f"the server at {server} did not answer in time ({_strip(exc)})"
    if isinstance(exc, TransportError):
        return f"cannot reach the server at {server}: {_strip(exc)}"
    if not isinstance(exc, ApiError):
        return str(exc)
    problem = exc.problem
    if isinstance(exc, AuthenticationError):
        return (
            f"401 not authenticated: {problem.detail}; log in with `hetuflow login`, "
            "or pass --token / set HETUFLOW_TOKEN"
        )
    if isinstance(exc, PermissionDeniedError):
        return f"403 forbidden: {problem.detail} (the token's scope does not allow this)"
    if isinstance(exc, ValidationError) and problem.errors:
        fields = "; ".join(f"{error.path}: {error.message}" for error in problem.errors)
        return f"422 invalid: {fields}"
    return f"{exc.status} {problem.title.lower()}: {problem.detail}"


def _strip(exc: Exception) -> str:
    """The client's message without its generic prefix."""
    text = str(exc)
    for prefix in ("request failed: ", "request timed out: "):
        text = text.removeprefix(prefix)
    return text
