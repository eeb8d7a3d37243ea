"""Typed REST client of hetuflow-server, blocking (``Client``) and asyncio (``AsyncClient``).

Needs httpx, which the ``client`` extra installs (``pip install 'hetuflow-core[client]'``); importing
``hetuflow_core`` itself never imports it. Both clients have the same methods, one per endpoint of the
REST API, taking and returning the Structs of ``hetuflow_core``::

    from hetuflow_core import CommandKind, JobConfig, JobCreate
    from hetuflow_core.client import Client

    with Client("http://127.0.0.1:8080", token) as hetuflow:
        config = JobConfig(command=CommandKind.BASH, script="echo $HETUFLOW_PARAMS")
        job = hetuflow.create_job(JobCreate(name="hello", config=config))
        hetuflow.trigger_job(job.id, {"who": "world"})

Every failure is a ``HetuflowClientError``: ``TransportError`` when no reply came, ``ApiError`` (with
the server's problem document, and a subclass per status) when the server refused.
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
