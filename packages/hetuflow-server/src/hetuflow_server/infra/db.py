"""The database boundary: the connection pool, the transaction helper and the one statement executor.

``ModelManager`` owns a ``psycopg_pool.AsyncConnectionPool``; the application opens it in its lifespan and
closes it on shutdown. Every statement of the server runs through ``fetch_one``/``fetch_all``/``execute``
below, on a connection handed out by ``ModelManager.transaction()`` (or ``autocommit()``). Pooled
connections stay in autocommit mode and ``transaction()`` sends ``BEGIN`` itself: that first round trip
doubles as the check that the connection is alive (one that is not is replaced, and the next one tried),
so a transaction costs no separate liveness query. Those two places are the only ones that
see psycopg's exceptions: ``translate`` turns them into ``hetuflow_server.errors`` (a unique violation is a
``Conflict``, a check violation ``InvalidInput``, a lost connection ``DatabaseUnavailable`` ...), so no other
layer imports psycopg errors.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, TypeAlias

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from hetuflow_server.errors import (
    Conflict,
    DatabaseUnavailable,
    FieldProblem,
    HetuflowError,
    InvalidInput,
)
from hetuflow_server.infra.sql import Query, query

__all__ = [
    "Connection",
    "ModelManager",
    "Params",
    "execute",
    "fetch_all",
    "fetch_one",
    "translate",
]

logger = logging.getLogger(__name__)

Connection: TypeAlias = psycopg.AsyncConnection[DictRow]
Params: TypeAlias = Mapping[str, Any]
Row: TypeAlias = dict[str, Any]

DEFAULT_POOL_MIN_SIZE: Final = 1
DEFAULT_POOL_MAX_SIZE: Final = 10
DEFAULT_POOL_TIMEOUT_SECS: Final = 10.0
DEFAULT_OPEN_TIMEOUT_SECS: Final = 30.0

# Friendly words for the constraints a client can run into; anything else gets PostgreSQL's own message.
_CONFLICT_MESSAGES: Final[Mapping[str, str]] = {
    "sched_job_namespace_name_key": "a job with this name already exists in the namespace",
    "sched_flow_name_key": "a flow with this name already exists",
    "sched_task_schedule_slot_key": "the schedule already has a task for this slot",
    "sched_task_instance_attempt_key": "this attempt of the task was already dispatched",
    "sched_token_pkey": "a token with this jti already exists",
    "sched_agent_pkey": "an agent with this id already exists",
}
# "Key (job_id)=(...) is not present in table ..." names the offending column of a foreign-key violation.
_KEY_COLUMNS: Final = re.compile(r"Key \((\w+)\)=")


class ModelManager:
    """The pool of database connections and the way to run a unit of work on one.

    ``open()``/``close()`` belong to the application's lifespan. ``transaction()`` hands out a connection
    inside a transaction that commits when the block ends normally and rolls back when it raises.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = DEFAULT_POOL_MIN_SIZE,
        max_size: int = DEFAULT_POOL_MAX_SIZE,
        timeout_secs: float = DEFAULT_POOL_TIMEOUT_SECS,
        name: str = "hetuflow",
        idle_in_transaction_timeout_secs: float | None = None,
    ) -> None:
        self._conninfo = conninfo
        # A server that hangs (frozen, stalled, cut off from the database) inside a transaction would keep its
        # row locks until TCP gives up, hours later: the leader lease row, claimed tasks, attempts being
        # reported. With a timeout PostgreSQL ends such a session and the locks go with it.
        idle_ms = None
        if idle_in_transaction_timeout_secs is not None:
            idle_ms = max(1, round(idle_in_transaction_timeout_secs * 1000))
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={"row_factory": dict_row},
            min_size=min_size,
            max_size=max_size,
            open=False,
            # No `check=`: a connection that died while idle (server restart, network cut) is found by the
            # first round trip of `_checkout` and replaced before the unit of work sees it.
            timeout=timeout_secs,
            name=name,
            configure=functools.partial(_configure, idle_timeout_ms=idle_ms),
        )

    @property
    def conninfo(self) -> str:
        """The connection string the pool connects with (the LISTEN connection and migrations reuse it)."""
        return self._conninfo

    @property
    def pool(self) -> AsyncConnectionPool[Connection]:
        """The underlying pool, for its statistics; run statements through ``transaction()``."""
        return self._pool

    async def open(self, *, wait: bool = True, timeout_secs: float = DEFAULT_OPEN_TIMEOUT_SECS) -> None:
        """Open the pool; with ``wait`` block until ``min_size`` connections exist or fail with
        DatabaseUnavailable."""
        try:
            await self._pool.open(wait=wait, timeout=timeout_secs)
        except (psycopg.Error, PoolTimeout) as exc:
            await self._pool.close()
            raise translate(exc) from exc

    async def close(self) -> None:
        """Close the pool; connections in use are closed as they come back."""
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction: commit on normal exit, rollback on error."""
        try:
            conn = await self._checkout(_BEGIN)
            try:
                yield conn
            except BaseException:
                await _rollback(conn)
                raise
            else:
                await conn.execute(_COMMIT)
            finally:
                await self._pool.putconn(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            # Statement errors were translated by the executor; what is left is checkout, commit or rollback.
            raise translate(exc) from exc

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Connection]:
        """A pooled connection on which each statement commits on its own: no BEGIN and COMMIT round trips
        for a unit of work that is one statement."""
        try:
            conn = await self._checkout(_ALIVE)
            try:
                yield conn
            finally:
                await self._pool.putconn(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc) from exc

    async def _checkout(self, first: bytes) -> Connection:
        """A pooled connection on which ``first`` (BEGIN, or an empty query) ran: a connection that fails it
        (it died while idle) is closed, the pool replaces it, and the next one is tried. Nothing of the unit
        of work ran yet, so trying again is safe; each wait for a connection is bounded by the pool's
        timeout."""
        for attempt in range(self._pool.max_size + 1):
            conn = await self._pool.getconn()
            try:
                await conn.execute(first)
            except psycopg.Error:
                await conn.close()
                await self._pool.putconn(conn)
                if attempt == self._pool.max_size:
                    raise
                logger.warning("discarding a pooled database connection that failed its first statement")
                continue
            except BaseException:
                await conn.close()  # cancelled mid-statement: its state is unknown
                await self._pool.putconn(conn)
                raise
            return conn
        raise AssertionError("unreachable: the last attempt raises")

    async def ping(self) -> None:
        """Run a trivial statement; raises DatabaseUnavailable when the database cannot be reached."""
        async with self.transaction() as conn:
            await fetch_one(conn, _PING)


_PING: Final = query("ping")
_BEGIN: Final = b"BEGIN"
_COMMIT: Final = b"COMMIT"
_ROLLBACK: Final = b"ROLLBACK"
_ALIVE: Final = b""  # an empty query: one round trip, no statement (what psycopg_pool's check sends)
_SET_UTC: Final = query("set_session_utc")
_SET_IDLE_TIMEOUT: Final = query("set_session_idle_timeout")


async def _configure(conn: Connection, *, idle_timeout_ms: int | None) -> None:
    """Per new connection: timestamps come back in UTC whatever the database's default time zone is, and a
    session idle in a transaction for ``idle_timeout_ms`` is ended by the database (when set)."""
    set_json_loads(_json_loads, conn)
    # Autocommit for good: `ModelManager.transaction` sends BEGIN and COMMIT itself.
    await conn.set_autocommit(True)
    await conn.execute(_SET_UTC.statement)
    if idle_timeout_ms is not None:
        await conn.execute(_SET_IDLE_TIMEOUT.statement, {"timeout_ms": idle_timeout_ms})


async def _rollback(conn: Connection) -> None:
    """Roll back after an error; a connection on which that fails (broken, or left mid-statement by a
    cancellation) is closed instead, and the pool replaces it."""
    if conn.closed:
        return
    try:
        await conn.execute(_ROLLBACK)
    except (psycopg.Error, asyncio.CancelledError):
        await conn.close()


def _json_loads(data: str | bytes) -> Any:
    """jsonb columns (every task's config and parameters) parsed with msgspec, several times faster than the
    json module psycopg uses by default; the json module still reads what msgspec refuses (numbers beyond a
    double's range, which only SQL written by hand can store)."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


@contextmanager
def _translated(q: Query) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, q.name) from exc


async def fetch_one(conn: Connection, q: Query, params: Params | None = None) -> Row | None:
    """Run ``q`` and return its first row as a dict, or None when it returns no row."""
    with _translated(q):
        cur = await conn.execute(q.statement, params)
        return await cur.fetchone()


async def fetch_all(conn: Connection, q: Query, params: Params | None = None) -> list[Row]:
    """Run ``q`` and return all its rows as dicts."""
    with _translated(q):
        cur = await conn.execute(q.statement, params)
        return await cur.fetchall()


async def execute(conn: Connection, q: Query, params: Params | None = None) -> int:
    """Run ``q`` for its effect and return the number of rows it touched."""
    with _translated(q):
        cur = await conn.execute(q.statement, params)
        return cur.rowcount


def translate(exc: BaseException, query_name: str | None = None) -> HetuflowError:
    """The server error that stands for a psycopg or pool exception (the one translation of the codebase)."""
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable(f"no database connection available: {exc}")
    if not isinstance(exc, psycopg.Error):
        return HetuflowError(f"unexpected database failure: {exc!r}")
    diag = exc.diag
    constraint = diag.constraint_name or ""
    detail = diag.message_detail or ""
    primary = diag.message_primary or str(exc).strip()
    if isinstance(exc, pg_errors.UniqueViolation):
        message = _CONFLICT_MESSAGES.get(constraint, "already exists")
        return Conflict(f"{message} ({detail})" if detail else message)
    if isinstance(exc, pg_errors.RestrictViolation) or (
        isinstance(exc, pg_errors.ForeignKeyViolation) and "still referenced" in detail
    ):
        # Deleting (or re-keying) a row that others still point at (ON DELETE RESTRICT / NO ACTION).
        return Conflict(f"still in use: {detail or primary}")
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        key = _KEY_COLUMNS.match(detail)
        fields = [FieldProblem(f"$.{key.group(1)}", "does not exist")] if key else []
        return InvalidInput(f"refers to something that does not exist: {detail or primary}", fields)
    if isinstance(exc, pg_errors.NotNullViolation):
        column = diag.column_name or "?"
        return InvalidInput(f"{column} is required", [FieldProblem(f"$.{column}", "required")])
    if isinstance(exc, pg_errors.IntegrityError | pg_errors.DataError):
        return InvalidInput(
            f"value refused by the database: {primary}" + (f" ({constraint})" if constraint else "")
        )
    if isinstance(exc, pg_errors.TransactionRollback):
        # Serialization failures and deadlocks: the request clashed with a concurrent one and may be retried.
        return Conflict(f"concurrent update, try again: {primary}")
    if isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError | pg_errors.IdleInTransactionSessionTimeout
    ):
        # The last one: the database ended a session left idle mid-transaction (a hung server); try again.
        return DatabaseUnavailable(f"database unavailable: {primary}")
    where = f" in query {query_name}" if query_name else ""
    logger.error("database error%s: %s", where, primary, extra={"query": query_name})
    return HetuflowError(f"database error{where}: {primary}")
