"""``hetuflow-server standalone``: all of hetuflow on one machine, in one process, with one command.

It runs the server as ``serve`` does plus one local agent in the same process (the ``standalone`` extra),
connected over loopback with an agent token the server issues to itself, then prints where the web UI and the
API are and an admin token. Both tokens are kept in the data directory (mode 0600) and reused while the server
still accepts them. On SIGTERM or SIGINT the agent stops first (running tasks finish within
``server.graceful_timeout_secs`` and are reported), then the server; a second signal cuts the agent's wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from hypercorn.asyncio import serve as hypercorn_serve

from hetuflow_core.api import TokenCreate
from hetuflow_core.enums import TokenScope
from hetuflow_core.settings import Setting
from hetuflow_server.application import ServerApplication, build_app
from hetuflow_server.cli.parser import PROG, CommandFailed, UsageError
from hetuflow_server.cli.serve import check_bind, hypercorn_config
from hetuflow_server.config import ServerConfig
from hetuflow_server.errors import HetuflowError

if TYPE_CHECKING:
    from hetuflow_agent import AgentApplication, AgentConfig

__all__ = ["ADMIN_TOKEN_FILE", "AGENT_TOKEN_FILE", "StandaloneOptions", "standalone"]

logger = logging.getLogger(__name__)

ADMIN_TOKEN_FILE: Final = "standalone-admin.token"
AGENT_TOKEN_FILE: Final = "standalone-agent.token"
AGENT_WORKDIR: Final = "agent"
REGISTER_WAIT_SECS: Final = 15.0
"""How long startup waits for the local agent to register before announcing the address anyway."""
_POLL_SECS: Final = 0.05
_TOKEN_MODE: Final = 0o600
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_LOOPBACK: Final = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}
_EXTRA_HINT: Final = "install it with: pip install 'hetuflow-server[standalone]'"
_PENDING_TOKEN: Final = "issued-at-startup"


@dataclasses.dataclass(frozen=True, slots=True)
class StandaloneOptions:
    """The local agent's settings from the command line (text, checked by the agent's configuration); None
    leaves the setting to ``HETUFLOW_AGENT__*`` or the agent's default (host name, CPU count, no labels)."""

    agent_id: str | None = None
    capacity: str | None = None
    labels: str | None = None


async def standalone(config: ServerConfig, options: StandaloneOptions) -> int:
    """Run server and local agent until a stop signal; the exit status (0 after a clean stop)."""
    agent_config = _agent_config(config, options)  # bad agent settings: exit 2 before anything starts
    from hetuflow_agent import AgentApplication, ConfigError  # importable: _agent_config checked it

    hc = hypercorn_config(config)
    check_bind(hc)
    application = ServerApplication(config)
    agent: AgentApplication | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set() and agent is not None:
            agent.request_stop()  # the second signal: stop running tasks now
        else:
            logger.info("received %s, stopping the local agent, then the server", signum.name)
        stop.set()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    shutdown = asyncio.Event()
    try:
        await application.start()
        admin_token = await _token(
            application, ADMIN_TOKEN_FILE, TokenCreate(name="standalone-admin", scope=TokenScope.ADMIN)
        )
        agent_token = await _token(
            application,
            AGENT_TOKEN_FILE,
            TokenCreate(name="standalone-agent", scope=TokenScope.AGENT, agent_id=agent_config.id),
        )
        server = asyncio.create_task(
            hypercorn_serve(build_app(application), hc, shutdown_trigger=shutdown.wait),  # type: ignore[arg-type]
            name="hetuflow:standalone-http",
        )
        try:
            if not stop.is_set():
                local = AgentApplication(msgspec.structs.replace(agent_config, token=agent_token))
                try:
                    await local.start()
                except ConfigError as exc:  # its working directory under the data directory is unusable
                    raise CommandFailed(f"standalone: the local agent cannot start: {exc}") from None
                agent = local
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REGISTER_WAIT_SECS):
                        await _first(server, _registered(agent), stop.wait())
                if not stop.is_set() and not server.done():
                    _announce(application, agent, admin_token)
                    await _first(server, stop.wait())
        finally:
            if agent is not None:
                await agent.stop()  # while the server still stores what the agent reports last
            application.draining.set()
            shutdown.set()
            await server
    finally:
        await application.stop()
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    logger.info("standalone server %s stopped", config.server.name)
    return 0


def _agent_config(config: ServerConfig, options: StandaloneOptions) -> AgentConfig:
    """The local agent's configuration: HETUFLOW_AGENT__* and the flags, with server, workdir and drain set
    here. The token is a placeholder until the server issues the real one."""
    try:
        import hetuflow_agent
    except ImportError:
        raise UsageError(f"{PROG} standalone: needs the hetuflow-agent package; {_EXTRA_HINT}") from None
    server = config.server
    host = _LOOPBACK.get(server.host, server.host)
    host = f"[{host}]" if ":" in host else host
    scheme = "wss" if server.tls_cert is not None else "ws"
    overrides = [
        Setting("servers", [f"{scheme}://{host}:{server.port}"], "server.port"),
        Setting("token", _PENDING_TOKEN, "standalone"),
        Setting("id", options.agent_id, "--agent-id"),
        Setting("capacity", options.capacity, "--capacity"),
        Setting("labels", options.labels, "--labels"),
        Setting("workdir", str(server.data_dir / AGENT_WORKDIR), "server.data_dir"),
        Setting("drain_timeout_secs", server.graceful_timeout_secs, "server.graceful_timeout_secs"),
        # The agent talks to this very process over loopback, whatever name the certificate carries.
        Setting("tls_insecure", server.tls_cert is not None, "server.tls_cert"),
    ]
    try:
        return hetuflow_agent.load_config(overrides=overrides)
    except hetuflow_agent.ConfigError as exc:
        raise UsageError(f"{PROG} standalone: agent {exc}") from None


async def _token(application: ServerApplication, name: str, request: TokenCreate) -> str:
    """The token kept in ``<data_dir>/name`` if the server still accepts it for ``request``, else a new one
    (written there for the next start)."""
    path = application.config.server.data_dir / name
    try:
        kept = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        kept = ""
    if kept and await _still_valid(application, kept, request):
        return kept
    issued = await application.tokens.issue(request, created_by="standalone")
    _write_private(path, issued.token)
    return issued.token


async def _still_valid(application: ServerApplication, token: str, request: TokenCreate) -> bool:
    """True when ``token`` is accepted and was issued for ``request``'s scope and subject; a revoked or
    expired token, or one sealed with another key, is not (the caller issues a new one)."""
    try:
        principal = await application.tokens.verify(token)
    except HetuflowError:
        return False
    return principal.scope is request.scope and principal.subject == (request.agent_id or request.name)


def _write_private(path: Path, text: str) -> None:
    # Written beside the target, then renamed: never half-written, never readable by others.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _TOKEN_MODE)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        os.fchmod(fd, _TOKEN_MODE)
        file.write(text + "\n")
    os.replace(temporary, path)


async def _registered(agent: AgentApplication) -> None:
    # The agent's session offers a `registered` property, no event to wait on: look every few milliseconds.
    while not agent.session.registered:  # noqa: ASYNC110
        await asyncio.sleep(_POLL_SECS)


async def _first(server: asyncio.Task[None], *waits: Awaitable[object]) -> None:
    """Return when the first of ``waits`` ends or the HTTP server stops; cancel the other ``waits``."""
    futures = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait([server, *futures], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()


def _announce(application: ServerApplication, agent: AgentApplication, admin_token: str) -> None:
    url = application.address
    data_dir = application.config.server.data_dir
    registered = agent.session.registered
    lines = [
        "hetuflow standalone is running",
        f"  web UI:       {url}/",
        f"  API:          {url}/api/v1  (OpenAPI document: {url}/api/openapi.json)",
        f"  admin token:  {admin_token}",
        f"  agent:        {agent.config.id} (capacity {agent.config.capacity}, "
        + ("connected" if registered else "not connected yet")
        + ")",
        f"  data:         {data_dir}  (the admin token is also in {data_dir / ADMIN_TOKEN_FILE})",
        "Stop with Ctrl-C or SIGTERM.",
    ]
    print("\n".join(lines), flush=True)
    if not registered:
        print(f"{PROG}: the local agent did not register within {REGISTER_WAIT_SECS:g} s", file=sys.stderr)
