"""``Client`` and ``AsyncClient``: run the calls of ``Api`` over httpx.

This module is the client's one exception boundary: httpx errors become ``TransportError``, error
replies become ``ApiError`` subclasses, and a success body that does not decode into the expected
Struct becomes ``ResponseDecodeError``. Nothing else escapes a call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
import msgspec

from hetuflow_core.__about__ import __version__
from hetuflow_core.client._api import Api
from hetuflow_core.client._call import AsyncRunner, Call, SyncRunner
from hetuflow_core.client._errors import RequestTimeout, ResponseDecodeError, TransportError, api_error

__all__ = ["DEFAULT_TIMEOUT_SECS", "AsyncClient", "Client"]

T = TypeVar("T")

DEFAULT_TIMEOUT_SECS: Final = 30.0
_USER_AGENT: Final = f"hetuflow-client/{__version__}"
_NO_BODY: Final = type(None)


def _client_options(
    base_url: str, token: str | None, timeout: float | httpx.Timeout, headers: Mapping[str, str] | None
) -> dict[str, Any]:
    """Keyword arguments shared by ``httpx.Client`` and ``httpx.AsyncClient``."""
    all_headers = {"Accept": "application/json", "User-Agent": _USER_AGENT, **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return {"base_url": base_url, "headers": all_headers, "timeout": timeout, "follow_redirects": False}


def _request_options(call: Call[Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"params": call.params}
    if call.body is not None:
        options["content"] = call.body
        options["headers"] = {"Content-Type": "application/json"}
    return options


@contextmanager
def _transport_errors() -> Iterator[None]:
    """Translate httpx's exceptions for a request that got no reply."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise RequestTimeout(f"request timed out: {exc}") from exc
    except (httpx.RequestError, httpx.InvalidURL) as exc:
        raise TransportError(f"request failed: {exc}") from exc


def _result(call: Call[T], response: httpx.Response) -> T:
    """The decoded body of a success reply, or the exception for an error reply."""
    method, url = call.method, str(response.request.url)
    if not response.is_success:
        raise api_error(response.status_code, response.content, method=method, url=url)
    if call.response is _NO_BODY:
        return None  # type: ignore[return-value]  # T is None for calls without a reply body
    try:
        return msgspec.json.decode(response.content, type=call.response)
    except msgspec.DecodeError as exc:
        expected = getattr(call.response, "__name__", call.response)
        raise ResponseDecodeError(
            f"{method} {url}: reply is not a valid {expected}: {exc}", status=response.status_code
        ) from exc


class Client(SyncRunner, Api):
    """Blocking client of the hetuflow REST API; every ``Api`` method returns its decoded reply.

    ``base_url`` is the server's root (``http://host:8080``), ``token`` an API token (sent as
    ``Authorization: Bearer``), ``timeout`` seconds per request or an ``httpx.Timeout``. Use it as a
    context manager, or call ``close()``. ``transport`` replaces the network (e.g. ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_SECS,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(**_client_options(base_url, token, timeout, headers), transport=transport)

    def _execute(self, call: Call[T]) -> T:
        with _transport_errors():
            response = self._http.request(call.method, call.path, **_request_options(call))
        return _result(call, response)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(AsyncRunner, Api):
    """asyncio client of the hetuflow REST API; every ``Api`` method returns an awaitable of its reply.

    Same arguments as ``Client``; use it as an async context manager, or call ``aclose()``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_SECS,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            **_client_options(base_url, token, timeout, headers), transport=transport
        )

    async def _execute(self, call: Call[T]) -> T:
        with _transport_errors():
            response = await self._http.request(call.method, call.path, **_request_options(call))
        return _result(call, response)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
