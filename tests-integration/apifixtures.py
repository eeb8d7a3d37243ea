"""A real hetuflow server for the REST API tests: the app of ``build_app`` served by Hypercorn on a socket.

The server runs in a background thread with its own event loop (so the async pool and the background loops
live where they would in production), listens on a free port of 127.0.0.1 and uses the test module's fresh
database. Tests talk to it over HTTP with a plain ``httpx.Client``; ``ApiServer.run`` executes a coroutine
on the server's loop for the few set-ups the API cannot make (registering an agent, as the gateway would).

Fixtures:

- ``api_server`` (module): the running server, stopped when the module is done.
- ``admin_client`` / ``read_client`` / ``anon_client`` (module): ``httpx.Client`` with an admin token, a read
  token, or no token.
- ``pg_conn`` (module): an autocommit psycopg connection to the same database, to put rows into states the
  API only reaches through agents (a succeeded task, an attempt with logs).

Load it from ``conftest.py`` with ``pytest_plugins = [..., "apifixtures"]``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from hetuflow_core.api import TokenCreate
from hetuflow_core.enums import TokenScope
from hetuflow_server.application import ServerApplication, build_app
from hetuflow_server.config import DatabaseSection, ServerConfig, ServerSection

T = TypeVar("T")

STARTUP_TIMEOUT_SECS = 60.0
SHUTDOWN_TIMEOUT_SECS = 30.0


class ApiServer:
    """One server process's worth of hetuflow, running in a thread of the test process."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        config = ServerConfig(
            server=ServerSection(name="api-test", data_dir=data_dir),
            database=DatabaseSection(url=database_url, pool_min=1, pool_max=4),
        )
        self.application = ServerApplication(config)
        self.app = build_app(self.application)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="hetuflow-api-test-server", daemon=True)

    def start(self) -> None:
        """Start serving; returns once the lifespan (migrations, pool, key) is done."""
        self._thread.start()
        deadline = STARTUP_TIMEOUT_SECS
        while not self._started.wait(0.05):
            deadline -= 0.05
            if self._failure is not None or not self._thread.is_alive() or deadline <= 0:
                raise RuntimeError(f"test server did not start: {self._failure!r}")
        # The lifespan has run once the application container is started; wait for the socket too.
        with httpx.Client(base_url=self.url, timeout=5) as client:
            for _ in range(200):
                try:
                    client.get("/healthz")
                    return
                except httpx.TransportError:
                    self._started.wait(0.05)
        raise RuntimeError("test server does not answer")

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        config = HypercornConfig()
        # Hypercorn takes ownership of the descriptor it is given: hand it a duplicate of ours.
        config.bind = [f"fd://{os.dup(self._listener.fileno())}"]
        config.accesslog = None
        config.graceful_timeout = 5
        # Started before serving (as ``serve`` does) so the lifespan leaves start and stop to us.
        await self.application.start()
        try:
            self._started.set()
            await serve(self.app, config, shutdown_trigger=self._stop.wait, mode="asgi")
        finally:
            await self.application.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's event loop and return its result."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=STARTUP_TIMEOUT_SECS)

    def issue_token(self, scope: TokenScope, name: str, agent_id: str | None = None) -> str:
        """A new token of ``scope`` from the server's token service."""
        request = TokenCreate(name=name, scope=scope, agent_id=agent_id)
        issued = self.run(self.application.tokens.issue(request, created_by="tests"))
        return issued.token

    def stop(self) -> None:
        """Shut Hypercorn and the application down (the lifespan stops the container)."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(SHUTDOWN_TIMEOUT_SECS)
        self._listener.close()
        if self._thread.is_alive():
            raise RuntimeError("test server did not stop")


@pytest.fixture(scope="module")
def api_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A started server on the module's database, stopped after the module."""
    server = ApiServer(database_url, tmp_path_factory.mktemp("hetuflow-data"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client(server: ApiServer, token: str | None) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def admin_token(api_server: ApiServer) -> str:
    """A token of scope admin."""
    return api_server.issue_token(TokenScope.ADMIN, "tests-admin")


@pytest.fixture(scope="module")
def read_token(api_server: ApiServer) -> str:
    """A token of scope read."""
    return api_server.issue_token(TokenScope.READ, "tests-read")


@pytest.fixture(scope="module")
def admin_client(api_server: ApiServer, admin_token: str) -> Iterator[httpx.Client]:
    """An HTTP client of the server carrying an admin token."""
    yield from _client(api_server, admin_token)


@pytest.fixture(scope="module")
def read_client(api_server: ApiServer, read_token: str) -> Iterator[httpx.Client]:
    """An HTTP client of the server carrying a read token."""
    yield from _client(api_server, read_token)


@pytest.fixture(scope="module")
def anon_client(api_server: ApiServer) -> Iterator[httpx.Client]:
    """An HTTP client of the server without a token."""
    yield from _client(api_server, None)


@pytest.fixture(scope="module")
def pg_conn(api_server: ApiServer, database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the server's database (after the server migrated it)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
