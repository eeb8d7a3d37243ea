"""Server fixtures for integration tests: a real ``hetuflow-server serve``, the CLI, an in-process app.

- ``start_server(data_dir, database_url=...)``: start ``python -m hetuflow_server serve`` on a free port of
  127.0.0.1 and wait until ``/readyz`` answers 200; returns a `ServerProcess` (``.url``, ``.cli(...)``,
  ``.terminate()``).
- ``stop_process(process, timeout)``: SIGTERM and wait; the exit status, or None after a SIGKILL.
- ``run_cli(*args)``: run ``python -m hetuflow_server`` with a clean configuration environment.
- ``server_process`` (module): a server on ``migrated_database_url`` with an admin token (``.admin_token``);
  stopped with SIGTERM at the end of the module, which must exit 0.
- ``server_client`` (function): an ``httpx.Client`` on ``server_process`` sending its admin token.
- ``app_client`` (function): an in-process `ServerApplication` on ``migrated_database_url`` served to an
  ``httpx.AsyncClient`` through ASGI (``.client``, ``.application``, ``.admin_token``).

Subprocesses never inherit ``HETUFLOW_<SECTION>__<KEY>`` variables of the caller, so a developer's own
configuration cannot change what the tests see. Load it with ``pytest_plugins = [..., "serverfixtures"]``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from hetuflow_core.api import TokenCreate
from hetuflow_core.enums import TokenScope
from hetuflow_server.application import ServerApplication, build_app
from hetuflow_server.config import Setting, load_config

READY_TIMEOUT_SECS = 120.0
"""How long a server process may take to answer ``/readyz`` with 200: generous, since on a machine loaded
well beyond its cores starting the interpreter and importing the server alone can take tens of seconds."""
PROBE_TIMEOUT_SECS = 10.0
"""How long one ``/readyz`` request may take: a readiness check runs a database statement, which a loaded
machine can keep waiting for seconds; a shorter limit could give up on every single probe."""
STOP_TIMEOUT_SECS = 20.0
CLI_TIMEOUT_SECS = 60.0
_CONFIG_ENV = re.compile(r"^HETUFLOW_[A-Z]+__")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without hetuflow configuration variables, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not _CONFIG_ENV.match(key)}
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = CLI_TIMEOUT_SECS
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hetuflow_server *args``; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "hetuflow_server", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        check=False,
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM ``process`` and wait up to ``timeout``: its exit status, or None if it had to be SIGKILLed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


@dataclasses.dataclass
class ServerProcess:
    """A running ``hetuflow-server serve`` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    data_dir: Path
    database_url: str | None
    log_path: Path
    env: dict[str, str]
    admin_token: str = ""

    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def location_args(self) -> list[str]:
        """``--data-dir`` (and ``--database-url``) of this server, for CLI commands beside it."""
        args = ["--data-dir", str(self.data_dir)]
        if self.database_url is not None:
            args += ["--database-url", self.database_url]
        return args

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a CLI command on this server's data dir and database (``args`` start with the command)."""
        words = list(args)
        split = 2 if words[:1] == ["token"] else 1
        return run_cli(*words[:split], *self.location_args(), *words[split:], env=self.env)

    def create_token(self, *args: str) -> str:
        """``token create *args`` beside this server; the token it printed."""
        result = self.cli("token", "create", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def terminate(self, timeout: float = STOP_TIMEOUT_SECS) -> int:
        """Send SIGTERM and wait for the exit status."""
        status = stop_process(self.process, timeout)
        if status is None:
            raise AssertionError(f"server did not stop within {timeout} s after SIGTERM:\n{self.log()}")
        return status


def start_server(
    data_dir: Path,
    *,
    database_url: str | None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT_SECS,
    port: int | None = None,
) -> ServerProcess:
    """Start ``serve`` on ``port`` (default: a free one); wait until ``/readyz`` answers 200, or fail."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir.parent / f"{data_dir.name}-serve-{port}.log"
    args = ["serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    if database_url is not None:
        args += ["--database-url", database_url]
    full_env = clean_env(env)
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "hetuflow_server", *args], stderr=log, env=full_env)
    server = ServerProcess(
        process, f"http://127.0.0.1:{port}", port, data_dir, database_url, log_path, dict(env or {})
    )
    try:
        wait_ready(server, ready_timeout)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    return server


def wait_ready(server: ServerProcess, timeout: float) -> None:
    """Poll ``/readyz`` until it answers 200; fail with the server's log if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=PROBE_TIMEOUT_SECS).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready within {timeout} s:\n{server.log()}")


@pytest.fixture(scope="module")
def server_process(
    migrated_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A serving process on the module's migrated database with an admin token; must stop cleanly."""
    # A short revocation cache keeps tests that revoke from another process quick.
    server = start_server(
        tmp_path_factory.mktemp("server") / "data",
        database_url=migrated_database_url,
        env={"HETUFLOW_AUTH__REVOCATION_CACHE_SECS": "2"},
    )
    try:
        server.admin_token = server.create_token("--scope", "admin", "--name", "tests-admin")
        yield server
    finally:
        status = server.terminate()
    assert status == 0, f"server exited with {status}:\n{server.log()}"


@pytest.fixture
def server_client(server_process: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the module's server, authenticated as admin."""
    headers = {"Authorization": f"Bearer {server_process.admin_token}"}
    with httpx.Client(base_url=server_process.url, headers=headers, timeout=10) as client:
        yield client


@dataclasses.dataclass
class AppClient:
    """An in-process application and an ASGI client on it."""

    application: ServerApplication
    client: httpx.AsyncClient
    admin_token: str

    def auth(self, token: str) -> dict[str, str]:
        """The Authorization header for ``token``."""
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def app_client(migrated_database_url: str, tmp_path: Path) -> AsyncIterator[AppClient]:
    """A started `ServerApplication` on the module's database, served in-process over ASGI."""
    config = load_config(
        environ={},
        overrides=[
            Setting("server.data_dir", str(tmp_path / "data"), "app_client"),
            Setting("database.url", migrated_database_url, "app_client"),
            Setting("server.name", "in-process", "app_client"),
        ],
    )
    application = ServerApplication(config)
    await application.start()
    try:
        issued = await application.tokens.issue(
            TokenCreate(name="tests-admin", scope=TokenScope.ADMIN), created_by="tests"
        )
        transport = httpx.ASGITransport(app=build_app(application))
        async with httpx.AsyncClient(transport=transport, base_url="http://hetuflow.test") as client:
            yield AppClient(application, client, issued.token)
    finally:
        await application.stop()
