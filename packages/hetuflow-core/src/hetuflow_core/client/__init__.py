"""Typed REST client of hetuflow-server, blocking (``Client``) and asyncio (``AsyncClient``).

Needs httpx, from the ``client`` extra (``pip install 'hetuflow-core[client]'``). Both clients have one
method per endpoint, taking and returning the Structs of ``hetuflow_core``, e.g.
``Client(url, token).create_job(JobCreate(...))``. Every failure is a ``HetuflowClientError``:
``TransportError`` when no reply came, ``ApiError`` (a subclass per status) when the server refused.
"""

from __future__ import annotations

try:
    import httpx as _httpx  # noqa: F401  # probe only: fail here with advice rather than deep inside
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError(
        "hetuflow_core.client needs httpx; install it with: pip install 'hetuflow-core[client]'"
    ) from exc

from hetuflow_core.client._api import Api
from hetuflow_core.client._call import Call
from hetuflow_core.client._errors import (
    ApiError,
    AuthenticationError,
    AuthError,
    BadRequestError,
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
from hetuflow_core.client._http import DEFAULT_TIMEOUT_SECS, AsyncClient, Client

__all__ = [
    "DEFAULT_TIMEOUT_SECS",
    "Api",
    "ApiError",
    "AsyncClient",
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "Call",
    "Client",
    "ConflictError",
    "HetuflowClientError",
    "NotFoundError",
    "PermissionDeniedError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ServerError",
    "TransportError",
    "ValidationError",
]
