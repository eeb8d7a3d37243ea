"""Guarding Starlette endpoints and WebSocket upgrades with bearer tokens.

``await authorize(conn, scope)`` reads ``Authorization: Bearer <token>``, verifies the token with the
application's `TokenService`, checks its scope and records the `Principal` on ``conn.state.principal``.
No token or an invalid one raises `errors.Unauthorized` (401, answered with ``WWW-Authenticate: Bearer``);
a valid token whose scope is not enough raises `errors.Forbidden` (403). It takes any
``HTTPConnection``, so the agent gateway can call it on a ``WebSocket`` before accepting the upgrade.
``@requires(scope)`` wraps a plain ``async def endpoint(request)`` with the same check.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, cast

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from hetuflow_core.enums import TokenScope
from hetuflow_server.auth.principal import Principal
from hetuflow_server.errors import Forbidden, Unauthorized

__all__ = ["TokenVerifier", "authorize", "bearer_token", "principal_of", "requires"]

_SCHEME = "bearer"

RequestT = TypeVar("RequestT", bound=Request)
Endpoint = Callable[[RequestT], Awaitable[Response]]


class TokenVerifier(Protocol):
    """What the guard needs from the application: turning a token into a principal or refusing it."""

    async def verify(self, token: str) -> Principal: ...


class _Container(Protocol):
    @property
    def tokens(self) -> TokenVerifier: ...


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value; `Unauthorized` otherwise."""
    if not authorization:
        raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token:
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token


async def authorize(conn: HTTPConnection, scope: TokenScope) -> Principal:
    """Verify the bearer token of ``conn`` and require ``scope``; sets ``conn.state.principal``."""
    token = bearer_token(conn.headers.get("authorization"))
    container = cast(_Container, conn.app.state.hetuflow)
    principal = await container.tokens.verify(token)
    if not principal.satisfies(scope):
        raise Forbidden(f"a {principal.scope} token may not do this; it needs {scope} scope")
    conn.state.principal = principal
    return principal


def principal_of(conn: HTTPConnection) -> Principal:
    """The principal `authorize` recorded on ``conn``; `Unauthorized` if it never ran."""
    principal = getattr(conn.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthorized("request was not authorized")
    return principal


def requires(scope: TokenScope) -> Callable[[Endpoint[RequestT]], Endpoint[RequestT]]:
    """Decorate a Starlette endpoint so that it runs only for a token of at least ``scope``.

    Errors propagate as `Unauthorized`/`Forbidden`; the application's exception handlers answer them.
    """

    def decorate(endpoint: Endpoint[RequestT]) -> Endpoint[RequestT]:
        @functools.wraps(endpoint)
        async def guarded(request: RequestT) -> Response:
            await authorize(request, scope)
            return await endpoint(request)

        return guarded

    return decorate
