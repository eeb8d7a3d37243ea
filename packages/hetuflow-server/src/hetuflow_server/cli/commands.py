"""The subcommands of ``hetuflow-server`` but ``serve`` and ``standalone``: migrate, keygen, token, check.

Each takes the loaded configuration and the parsed arguments and returns the exit status. Results go to
stdout (``token create`` prints the token and nothing else, so ``TOKEN=$(hetuflow-server token create …)``
works); logs go to stderr. Commands that need the database open the same `ServerApplication` as ``serve``,
so they find the same database, embedded PostgreSQL and key, and can run beside a serving process.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from hetuflow_core.api import TokenCreate, TokenInfo
from hetuflow_core.enums import TokenScope
from hetuflow_server.application import ServerApplication
from hetuflow_server.auth.keys import KeyFileError, generate_key, load_key, write_key
from hetuflow_server.cli.parser import UsageError
from hetuflow_server.cli.serve import serve
from hetuflow_server.cli.standalone import StandaloneOptions, standalone
from hetuflow_server.config import ServerConfig, redact_url
from hetuflow_server.errors import HetuflowError
from hetuflow_server.infra import pending_migrations
from hetuflow_server.infra.migrator import available_migrations

__all__ = ["run"]

# Which flag a TokenCreate field comes from, to name it in validation errors.
_TOKEN_FLAGS = {"$.name": "--name", "$.agent_id": "--agent", "$.ttl_secs": "--ttl", "$.scope": "--scope"}
_json = msgspec.json.Encoder()


async def run(args: argparse.Namespace, config: ServerConfig) -> int:
    """Run the subcommand named by ``args``; its exit status."""
    if args.command == "serve":
        return await serve(config)
    if args.command == "standalone":
        return await standalone(
            config, StandaloneOptions(agent_id=args.agent_id, capacity=args.capacity, labels=args.labels)
        )
    if args.command == "migrate":
        return await migrate(config)
    if args.command == "keygen":
        return keygen(config, force=args.force)
    if args.command == "check":
        return await check(config)
    if args.token_command == "create":
        return await token_create(config, args)
    if args.token_command == "list":
        return await token_list(config, as_json=args.json)
    return await token_revoke(config, args.jti)


async def migrate(config: ServerConfig) -> int:
    """Apply pending migrations and say which."""
    application = ServerApplication(config)
    async with application.opened(apply_migrations=True, load_key=False):
        applied = application.applied_migrations
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("database schema is up to date")
    return 0


def keygen(config: ServerConfig, *, force: bool) -> int:
    """Write a new private key to the configured key file."""
    path = config.key_path
    replaced = path.exists()
    key = generate_key()
    write_key(path, key, force=force)
    print(f"wrote server key {path} (kid {key.get('kid')})")
    if replaced:
        print("the previous key was replaced: tokens issued with it are no longer accepted", file=sys.stderr)
    return 0


async def token_create(config: ServerConfig, args: argparse.Namespace) -> int:
    """Issue a token and print only the token.

    Only with an existing server key: a token signed by a key made here on the spot (a mistyped or missing
    ``--data-dir``) would be refused by every server, so a fresh data directory is a usage error.
    """
    request = _token_request(config, args)
    if not config.key_path.exists():
        raise UsageError(
            f"token create: no server key at {config.key_path}: pass the --data-dir (or --key-file) of the "
            "server that should accept the token; a new data directory needs 'hetuflow-server keygen' first"
        )
    application = ServerApplication(config)
    async with application.opened():
        issued = await application.tokens.issue(request, created_by=f"cli:{_user()}")
    print(issued.token)
    return 0


async def token_list(config: ServerConfig, *, as_json: bool) -> int:
    """Print every issued token's record (never a token)."""
    application = ServerApplication(config)
    async with application.opened():
        records = await application.tokens.list(include_revoked=True)
    if as_json:
        for record in records:
            print(_json.encode(record).decode())
        return 0
    now = datetime.now(UTC)
    rows = [("JTI", "NAME", "SCOPE", "SUBJECT", "CREATED", "EXPIRES", "STATE")]
    rows += [
        (
            str(r.jti),
            r.name,
            r.scope.value,
            r.subject,
            _when(r.created_at),
            _when(r.expires_at),
            _state(r, now),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def token_revoke(config: ServerConfig, jti_text: str) -> int:
    """Revoke one token by jti."""
    try:
        jti = UUID(jti_text)
    except ValueError:
        raise UsageError(f"token revoke: JTI must be a token id (UUID), got {jti_text!r}") from None
    application = ServerApplication(config)
    async with application.opened():
        record = await application.tokens.revoke(jti)
    print(f"revoked token {record.jti} ({record.name}, {record.scope.value})")
    return 0


async def check(config: ServerConfig) -> int:
    """Validate configuration, key, database connection and migrations; 0 when all pass."""
    checks: list[tuple[str, bool, str]] = [("config", True, f"valid (data dir {config.server.data_dir})")]
    checks.append(_check_key(config))
    checks.extend(await _check_database(config))
    width = max(len(name) for name, _, _ in checks)
    for name, ok, detail in checks:
        print(f"{name.ljust(width)}  {'ok  ' if ok else 'FAIL'}  {detail}")
    failed = [name for name, ok, _ in checks if not ok]
    print("all checks passed" if not failed else f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def _check_key(config: ServerConfig) -> tuple[str, bool, str]:
    path = config.key_path
    if not path.exists():
        return "key", True, f"{path} does not exist yet; serve generates it at first start"
    try:
        key = load_key(path)
    except KeyFileError as exc:
        return "key", False, exc.detail
    return "key", True, f"{path} (kid {key.get('kid')})"


async def _check_database(config: ServerConfig) -> list[tuple[str, bool, str]]:
    where = (
        redact_url(config.database.url)
        if config.database.url is not None
        else f"embedded PostgreSQL in {config.embedded_pg_dir}"
    )
    application = ServerApplication(config)
    try:
        async with (
            application.opened(apply_migrations=False, load_key=False),
            application.db.transaction() as conn,
        ):
            pending = await pending_migrations(conn)
    except HetuflowError as exc:
        return [("database", False, f"{where}: {exc.detail}"), ("migrations", False, "not checked")]
    total = len(available_migrations())
    if pending:
        detail = f"{len(pending)} of {total} pending: {', '.join(pending)} (run 'hetuflow-server migrate')"
        return [("database", True, where), ("migrations", False, detail)]
    return [("database", True, where), ("migrations", True, f"all {total} applied")]


def _token_request(config: ServerConfig, args: argparse.Namespace) -> TokenCreate:
    ttl: object = config.auth.token_ttl_secs
    if args.ttl is not None:
        try:
            ttl = int(args.ttl)
        except ValueError:
            raise UsageError(f"token create: --ttl: expected whole seconds, got {args.ttl!r}") from None
    fields = {
        "name": args.name,
        "scope": TokenScope.AGENT.value if args.agent is not None else args.scope,
        "agent_id": args.agent,
        "ttl_secs": ttl,
    }
    try:
        return msgspec.convert(fields, TokenCreate)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).rpartition(" - at `")
        flag = _TOKEN_FLAGS.get(path.rstrip("`"), path.rstrip("`"))
        raise UsageError(f"token create: {flag}: {message or exc}") from None


def _user() -> str:
    # The account name from the password database (not $USER, which anyone can set).
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _state(record: TokenInfo, now: datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at <= now:
        return "expired"
    return "active"
