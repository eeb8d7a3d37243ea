"""The ``hetuflow-agent`` command: ``run`` the agent, or ``check`` that a server accepts it.

This is the only place that configures logging handlers, reads the process environment and installs
signal handlers. Every bad argument or setting exits with status 2 and one line on stderr; ``check``
exits 1 when a server cannot be reached or refuses the token, saying exactly why.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NoReturn

from hetuflow_agent.__about__ import __version__
from hetuflow_agent.application import AgentApplication
from hetuflow_agent.config import SETTINGS_HELP, AgentConfig, Setting, env_var, load_config, parse_pairs
from hetuflow_agent.connection.url import make_ssl_context, parse_server_url
from hetuflow_agent.connection.websocket import CLOSE_NORMAL, connect
from hetuflow_agent.errors import AgentError, ConfigError
from hetuflow_core.logfmt import configure_logging

__all__ = ["main"]

logger = logging.getLogger(__name__)

PROG: Final = "hetuflow-agent"
EXIT_USAGE: Final = 2

# CLI flag → config key; flags not listed here (--config) are not settings.
_FLAG_KEYS: Final = {
    "server": "servers",
    "token": "token",
    "token_file": "token_file",
    "id": "id",
    "name": "name",
    "labels": "labels",
    "capacity": "capacity",
    "prefetch": "prefetch",
    "workdir": "workdir",
    "drain_timeout": "drain_timeout_secs",
    "tls_ca_file": "tls_ca_file",
    "tls_insecure": "tls_insecure",
    "log_level": "log_level",
    "log_format": "log_format",
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}\n")


def _help(key: str) -> str:
    return f"{SETTINGS_HELP[key]} [env {env_var(key)}]".replace("%", "%%")


def _build_parser() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML file with any of the settings below")
    common.add_argument("--server", metavar="URL", action="append", help=_help("servers") + "; repeatable")
    common.add_argument("--token", metavar="TOKEN", help=_help("token"))
    common.add_argument("--token-file", metavar="FILE", help=_help("token_file"))
    common.add_argument("--id", metavar="ID", help=_help("id"))
    common.add_argument("--name", metavar="NAME", help=_help("name"))
    common.add_argument("--labels", metavar="K=V,...", help=_help("labels"))
    common.add_argument("--capacity", metavar="N", type=int, help=_help("capacity"))
    common.add_argument("--prefetch", metavar="N", type=int, help=_help("prefetch"))
    common.add_argument("--workdir", metavar="DIR", help=_help("workdir"))
    common.add_argument("--drain-timeout", metavar="SECS", type=float, help=_help("drain_timeout_secs"))
    common.add_argument("--tls-ca-file", metavar="FILE", help=_help("tls_ca_file"))
    common.add_argument("--tls-insecure", action="store_true", default=None, help=_help("tls_insecure"))
    common.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), type=str.lower, help=_help("log_level")
    )
    common.add_argument("--log-format", choices=("text", "json"), help=_help("log_format"))

    settings = "\n".join(f"  {env_var(key):<42} {text}" for key, text in SETTINGS_HELP.items())
    epilog = (
        "Settings, lowest precedence first: defaults < TOML file (--config, keys named as below in "
        "lower case) < environment < flags.\nEnvironment variables:\n" + settings.replace("%", "%%")
    )
    parser = _Parser(
        prog=PROG,
        description="Worker of the hetuflow distributed task scheduler.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,check}")
    commands.add_parser(
        "run",
        parents=[common],
        help="connect to the servers and run the tasks they dispatch",
        description="Run the agent until SIGTERM/SIGINT (then drain and exit 0).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands.add_parser(
        "check",
        parents=[common],
        help="check that each server is reachable and accepts the token, then exit",
        description="Open the agent WebSocket to each server with the token and close it again; "
        "exit 0 when all accept it, 1 otherwise. Does not register, so a running agent is undisturbed.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m hetuflow_agent``; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    overrides: list[Setting] = []
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest)
        if dest == "labels" and value is not None:
            try:
                value = parse_pairs(value)
            except ValueError as exc:
                parser.error(f"argument --labels: {exc}")
        if value is not None:
            overrides.append(Setting(key, value, "--" + dest.replace("_", "-")))
    try:
        config_file = Path(args.config) if args.config else None
        config = load_config(config_file=config_file, environ=os.environ, overrides=overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    configure_logging(config.log_level, config.log_format)
    token_flag = args.token is not None
    if args.command == "check":
        if token_flag:
            _warn_token_flag()
        return asyncio.run(_check(config))
    try:
        return asyncio.run(_run(config, token_flag=token_flag))
    except ConfigError as exc:  # found only when starting (the working directory)
        parser.error(str(exc))


def _warn_token_flag() -> None:
    logger.warning(
        "the token was given with --token, where every user of this host can read it (ps);"
        " use --token-file or HETUFLOW_AGENT__TOKEN"
    )


async def _run(config: AgentConfig, *, token_flag: bool = False) -> int:
    """Run the agent; the first SIGTERM/SIGINT drains and exits, a second one skips the drain."""
    app = AgentApplication(config)
    await app.start()  # a bad working directory is the one error, alone on stderr
    if token_flag:
        _warn_token_flag()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.request_stop)
    try:
        await app.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


async def _check(config: AgentConfig) -> int:
    """Upgrade to each server with the token, close cleanly, and print one line per server."""
    context = make_ssl_context(config.tls_ca_file, config.tls_insecure)
    failures = 0
    for text in config.servers:
        url = parse_server_url(text)
        try:
            ws = await connect(
                url,
                config.token,
                agent_id=config.id,
                ssl_context=context,
                timeout_secs=config.connect_timeout_secs,
                max_message_bytes=config.max_message_bytes,
            )
        except AgentError as exc:
            failures += 1
            print(f"FAIL {exc}", flush=True)
            continue
        await ws.close(CLOSE_NORMAL, "hetuflow-agent check")
        print(f"ok   {url}: reachable, token accepted for agent {config.id!r}", flush=True)
    return 1 if failures else 0
