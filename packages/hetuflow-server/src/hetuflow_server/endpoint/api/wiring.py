"""Where the API meets the rest of the server: the application container, its services and the auth guard.

The application puts its container (``hetuflow_server.application.ServerApplication``) on
``app.state.hetuflow``; handlers reach the services and the token service only through the functions here,
so the API has one place that knows how the container is laid out.
"""

from __future__ import annotations

from typing import Protocol, cast

from starlette.requests import HTTPConnection

from hetuflow_core.enums import TokenScope
from hetuflow_server.auth import guard
from hetuflow_server.auth.principal import Principal
from hetuflow_server.auth.service import TokenService
from hetuflow_server.service import Services

__all__ = ["authorize", "principal", "services", "token_service"]


class _Container(Protocol):
    """The part of the application container the API uses."""

    @property
    def services(self) -> Services: ...

    @property
    def tokens(self) -> TokenService: ...


def _container(conn: HTTPConnection) -> _Container:
    return cast(_Container, conn.app.state.hetuflow)


async def authorize(conn: HTTPConnection, scope: TokenScope) -> Principal:
    """Require a valid bearer token of at least ``scope`` (401/403 otherwise)."""
    return await guard.authorize(conn, scope)


def principal(conn: HTTPConnection) -> Principal:
    """Who made the request, as recorded by ``authorize``."""
    return guard.principal_of(conn)


def services(conn: HTTPConnection) -> Services:
    """The service layer the handlers call."""
    return _container(conn).services


def token_service(conn: HTTPConnection) -> TokenService:
    """The service issuing, listing and revoking tokens."""
    return _container(conn).tokens
