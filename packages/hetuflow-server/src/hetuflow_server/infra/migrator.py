"""Schema migrations: the numbered ``.sql`` files of ``infra/migrations`` applied in order, once each.

``migrate`` runs at startup and from ``hetuflow-server migrate``. It holds a session-level advisory lock for
the whole run, so servers starting together take turns: the first applies what is missing, the others then
find nothing left to do. Each file runs in its own transaction together with its ``schema_migrations`` row, so
a failing file leaves no trace and the next run retries it.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import Any, Final

import psycopg
from psycopg import sql

from hetuflow_server.infra import db

__all__ = ["MIGRATION_LOCK_KEY", "Migration", "available_migrations", "migrate", "pending_migrations"]

logger = logging.getLogger(__name__)

MIGRATION_LOCK_KEY: Final = 0x68657475_666C6F77  # "hetuflow" as 8 bytes: the advisory lock of migrations
CONNECT_TIMEOUT_SECS: Final = 10
_FILE_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE: Final = sql.SQL(
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " name text PRIMARY KEY,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
_APPLIED: Final = sql.SQL("SELECT name FROM schema_migrations ORDER BY name")
_RECORD: Final = sql.SQL("INSERT INTO schema_migrations (name) VALUES (%(name)s::text)")
_TABLE_EXISTS: Final = sql.SQL("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
_LOCK: Final = sql.SQL("SELECT pg_advisory_lock(%(key)s::bigint)")
_UNLOCK: Final = sql.SQL("SELECT pg_advisory_unlock(%(key)s::bigint)")


class Migration:
    """One migration file: its name (``0001_initial``) and its SQL."""

    __slots__ = ("name", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text

    def __repr__(self) -> str:
        return f"Migration({self.name!r})"


def available_migrations() -> list[Migration]:
    """Every migration shipped in the wheel, in order; numbers must be unique and contiguous from 0001."""
    folder = resources.files(__package__).joinpath("migrations")
    found: list[Migration] = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_words.sql")
        if int(match.group(1)) != len(found) + 1:
            raise RuntimeError(
                f"migration {entry.name!r} is out of sequence (expected number {len(found) + 1})"
            )
        found.append(Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return found


async def pending_migrations(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Names of the shipped migrations not yet applied to the database behind ``conn``."""
    names = [migration.name for migration in available_migrations()]
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    await cur.execute(_TABLE_EXISTS)
    row = await cur.fetchone()
    if row is None or not row["present"]:
        return names
    await cur.execute(_APPLIED)
    applied = {r["name"] for r in await cur.fetchall()}
    return [name for name in names if name not in applied]


async def migrate(conninfo: str) -> list[str]:
    """Apply every pending migration under the migration advisory lock; returns the names applied (in order).

    Raises ``DatabaseUnavailable`` when the database cannot be reached, and the translated error of a failing
    migration (nothing of that file is kept).
    """
    try:
        return await _migrate(conninfo)
    except psycopg.Error as exc:
        raise db.translate(exc, "migrate") from exc


async def _migrate(conninfo: str) -> list[str]:
    migrations = available_migrations()
    async with await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECS
    ) as conn:
        await conn.execute(_LOCK, {"key": MIGRATION_LOCK_KEY})
        try:
            await conn.execute(_CREATE_TABLE)
            pending = set(await pending_migrations(conn))
            applied: list[str] = []
            for migration in migrations:
                if migration.name not in pending:
                    continue
                logger.info("applying migration %s", migration.name, extra={"migration": migration.name})
                async with conn.transaction():
                    # A whole file of trusted DDL from the wheel, run as one multi-statement simple query.
                    await conn.execute(migration.text.encode("utf-8"))
                    await conn.execute(_RECORD, {"name": migration.name})
                applied.append(migration.name)
            return applied
        finally:
            await conn.execute(_UNLOCK, {"key": MIGRATION_LOCK_KEY})
