"""The ``hetuflow-server`` command line: subcommands, their options, and how options become configuration.

Options that set a configuration key are declared once as `ConfigFlag` (flag, key, help); their ``--help``
names the environment variable of the same key, and `settings_from` turns the given ones into
`config.Setting` values, the highest layer of the configuration. Values stay strings here: the config layer
validates them, so ``--port abc`` and ``HETUFLOW_SERVER__PORT=abc`` fail with the same message.

Every usage error raises `UsageError` (one line, exit status 2) instead of argparse's usage dump; a command
that cannot do its job raises `CommandFailed` (one line, exit status 1).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hetuflow_server.__about__ import __version__
from hetuflow_server.config import Setting, env_var, iter_keys
from hetuflow_server.errors import HetuflowError

__all__ = ["CommandFailed", "ConfigFlag", "UsageError", "build_parser", "config_file_from", "settings_from"]

PROG = "hetuflow-server"


class UsageError(Exception):
    """Bad command-line input: the message is the one line shown before exiting with status 2."""


class CommandFailed(HetuflowError):
    """A command could not do its job (exit status 1); the detail is the one line shown."""

    code = "command-failed"
    title = "Command failed"


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigFlag:
    """A command-line option that sets configuration key ``key``."""

    flag: str
    key: str
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        return "config__" + self.key.replace(".", "__")


_DEFAULTS = {key: default for key, _, default in iter_keys()}

COMMON_FLAGS = (
    ConfigFlag("--data-dir", "server.data_dir", "DIR", "data directory: server key, embedded PostgreSQL"),
    ConfigFlag("--log-level", "log.level", "LEVEL", "debug, info, warning or error"),
    ConfigFlag("--log-format", "log.format", "FORMAT", "text or json (lines on stderr)"),
)
DATABASE_FLAGS = (
    ConfigFlag(
        "--database-url",
        "database.url",
        "URL",
        "PostgreSQL URL or conninfo; unset or empty: embedded PostgreSQL in <data-dir>/pg",
    ),
)
KEY_FLAGS = (
    ConfigFlag("--key-file", "auth.key_file", "FILE", "server private key (default <data-dir>/server.jwk)"),
)
SERVE_FLAGS = (
    ConfigFlag("--host", "server.host", "HOST", "address to listen on"),
    ConfigFlag("--port", "server.port", "PORT", "TCP port to listen on"),
    ConfigFlag("--name", "server.name", "NAME", "name of this server in the server list (default: hostname)"),
    ConfigFlag(
        "--tls-cert", "server.tls_cert", "FILE", "PEM certificate chain; serve HTTPS (needs --tls-key)"
    ),
    ConfigFlag("--tls-key", "server.tls_key", "FILE", "PEM private key of --tls-cert"),
)

_EPILOG = (
    "Configuration precedence: defaults < --config FILE (TOML) < environment HETUFLOW_<SECTION>__<KEY> "
    "< flags. "
    "Every key of the file has an environment variable, e.g. [scheduler] agent_timeout_secs is "
    "HETUFLOW_SCHEDULER__AGENT_TIMEOUT_SECS. See docs/configuration.md."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``hetuflow-server`` with every subcommand."""
    parser = _Parser(
        prog=PROG,
        description="hetuflow-server: REST API, agent gateway, scheduler and dispatcher of hetuflow.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = _command(commands, "serve", "run the server (HTTP API, agent WebSocket, scheduler)")
    _add_flags(serve, DATABASE_FLAGS + KEY_FLAGS + SERVE_FLAGS)

    migrate = _command(commands, "migrate", "apply pending database migrations and exit")
    _add_flags(migrate, DATABASE_FLAGS)

    keygen = _command(commands, "keygen", "generate the server's private key (P-256 JWK, mode 0600)")
    _add_flags(keygen, KEY_FLAGS)
    keygen.add_argument(
        "--force", action="store_true", help="replace an existing key (invalidates all tokens)"
    )

    token = _command(commands, "token", "create, list and revoke API and agent tokens", group=True)
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = _command(
        token_commands,
        "create",
        "issue a token and print it (only it) on stdout; needs the server's key (--data-dir or --key-file)",
    )
    _add_flags(create, DATABASE_FLAGS + KEY_FLAGS)
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--scope", choices=("admin", "read"), help="scope of an API token")
    who.add_argument("--agent", metavar="ID", help="issue an agent token for agent ID (scope agent)")
    create.add_argument("--name", required=True, help="a name to recognise the token by, e.g. ci or ops")
    create.add_argument(
        "--ttl",
        metavar="SECS",
        help=f"lifetime in seconds (default from {env_var('auth.token_ttl_secs')}, "
        f"else {_DEFAULTS['auth.token_ttl_secs']})",
    )
    listing = _command(token_commands, "list", "list issued tokens (never the tokens themselves)")
    _add_flags(listing, DATABASE_FLAGS + KEY_FLAGS)
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    revoke = _command(token_commands, "revoke", "revoke a token by its id (jti); it is refused at once")
    _add_flags(revoke, DATABASE_FLAGS + KEY_FLAGS)
    revoke.add_argument("jti", metavar="JTI", help="token id as shown by 'token list'")

    standalone = _command(
        commands, "standalone", "run the server, its embedded PostgreSQL and one local agent in one process"
    )
    _add_flags(standalone, DATABASE_FLAGS + KEY_FLAGS + SERVE_FLAGS)
    standalone.add_argument(
        "--capacity",
        metavar="N",
        help="tasks the local agent runs at once (env HETUFLOW_AGENT__CAPACITY, default: CPUs)",
    )
    standalone.add_argument(
        "--agent-id", metavar="ID", help="id of the local agent (env HETUFLOW_AGENT__ID, default: host name)"
    )
    standalone.add_argument(
        "--labels", metavar="K=V,...", help="labels of the local agent (env HETUFLOW_AGENT__LABELS)"
    )

    check = _command(commands, "check", "validate configuration, key, database connection and migrations")
    _add_flags(check, DATABASE_FLAGS + KEY_FLAGS)
    return parser


def settings_from(args: argparse.Namespace) -> list[Setting]:
    """The configuration settings given on the command line, labelled with their flag."""
    settings = []
    for flag in COMMON_FLAGS + DATABASE_FLAGS + KEY_FLAGS + SERVE_FLAGS:
        value = getattr(args, flag.dest, None)
        if value is not None:
            settings.append(Setting(flag.key, value, flag.flag))
    return settings


def config_file_from(args: argparse.Namespace) -> Path | None:
    """The ``--config`` file, if one was given."""
    value = getattr(args, "config", None)
    return Path(value) if value else None


def _command(
    commands: argparse._SubParsersAction[Any],
    name: str,
    summary: str,
    *,
    group: bool = False,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".", epilog=_EPILOG
    )
    if group:
        # Options belong to the actions below a group: argparse would let an action's defaults
        # overwrite values given to the group ("token --data-dir X create").
        return parser
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    _add_flags(parser, COMMON_FLAGS)
    return parser


def _add_flags(parser: argparse.ArgumentParser, flags: Sequence[ConfigFlag]) -> None:
    for flag in flags:
        default = _DEFAULTS[flag.key]
        shown = "" if default is None or flag.key == "server.name" else f", default {default}"
        parser.add_argument(
            flag.flag,
            dest=flag.dest,
            metavar=flag.metavar,
            help=f"{flag.help} (env {env_var(flag.key)}{shown})",
        )
