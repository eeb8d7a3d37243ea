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

``ModelManager.unit_of_work()`` opens one transaction that every ``transaction()`` and ``autocommit()`` block
opened by the same asyncio task inside it joins (as a savepoint). The API runs each change in one, so the
change and its audit record commit together however many transactions the service layer opens.

Round trips are what a statement costs most on a busy host (each wakes the database and then this process),
so statements whose results nobody reads do not get one of their own: ``execute_later`` queues them on the
connection (a NOTIFY, an audit record, a savepoint) and they travel in one pipeline with the next statement
or the COMMIT, in order.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import itertools
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, NamedTuple, TypeAlias

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
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
    "Later",
    "ModelManager",
    "Params",
    "execute",
    "execute_later",
    "fetch_all",
    "fetch_later",
    "fetch_one",
    "savepoint",
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


_DATETIME_OVERFLOW: Final = "22008"
# Our words for the data errors a request can cause (SQLSTATE class 22 and 23 codes).
_DATA_ERRORS: Final[Mapping[str, str]] = {
    _DATETIME_OVERFLOW: "a date or time is outside the range that can be stored (years 1 to 9999 in UTC)",
    "22007": "a date or time is not valid",
    "22003": "a number is outside the range that can be stored",
    "22001": "a text is longer than can be stored",
    "22P05": "a text holds a character that cannot be stored",
    "22021": "a text holds a character that cannot be stored",
    "22P02": "a value is not of the expected type",
}


def _refused(exc: psycopg.Error, words: str, query_name: str | None) -> InvalidInput:
    logger.info(
        "database refused a value in query %s: %s",
        query_name or "?",
        exc.diag.message_primary or str(exc).strip(),
        extra={"query": query_name},
    )
    return InvalidInput(words)


@dataclasses.dataclass(slots=True)
class _UnitOfWork:
    """The transaction of a ``unit_of_work()`` block: its pool's manager, its connection, the task it belongs
    to, and what to run once it committed."""

    manager: ModelManager
    conn: Connection
    owner: asyncio.Task[Any] | None
    after_commit: list[Callable[[], None]] = dataclasses.field(default_factory=list)


# The unit of work the current task runs in. Tasks spawned inside it inherit the variable, but not the right
# to share the connection: `owner` tells them apart, and they get transactions of their own.
_unit_of_work: contextvars.ContextVar[_UnitOfWork | None] = contextvars.ContextVar(
    "hetuflow_unit_of_work", default=None
)


def _joinable(manager: ModelManager) -> _UnitOfWork | None:
    unit = _unit_of_work.get()
    if unit is None or unit.manager is not manager or unit.owner is not asyncio.current_task():
        return None
    return unit


class ModelManager:
    """The pool of database connections and the way to run a unit of work on one.

    ``open()``/``close()`` belong to the application's lifespan. ``transaction()`` hands out a connection
    inside a transaction that commits when the block ends normally and rolls back when it raises; inside a
    ``unit_of_work()`` block it is a savepoint of that block's transaction instead.
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
    async def unit_of_work(self) -> AsyncIterator[Connection]:
        """One transaction that the ``transaction()`` and ``autocommit()`` blocks of this task join until the
        block ends: all of it commits at the end, or nothing does. Callbacks given to ``after_commit`` run
        once it committed."""
        if _joinable(self) is not None:
            raise RuntimeError("unit_of_work() blocks do not nest")
        callbacks: list[Callable[[], None]] = []
        # The blocks that join see a transaction in progress and use savepoints.
        async with self._own_transaction() as conn:
            token = _unit_of_work.set(_UnitOfWork(self, conn, asyncio.current_task(), callbacks))
            try:
                yield conn
            finally:
                _unit_of_work.reset(token)
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current unit of work committed (at once when there is none)."""
        unit = _joinable(self)
        if unit is None:
            callback()
        else:
            unit.after_commit.append(callback)

    @asynccontextmanager
    async def _joined(self, unit: _UnitOfWork) -> AsyncIterator[Connection]:
        async with savepoint(unit.conn):
            yield unit.conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction: commit on normal exit, rollback on error."""
        unit = _joinable(self)
        if unit is not None:
            async with self._joined(unit) as conn:
                yield conn
            return
        async with self._own_transaction() as conn:
            yield conn

    @asynccontextmanager
    async def _own_transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection of its own inside ``BEGIN`` (which also checks it, see `_checkout`): commit on
        normal exit, rollback on error."""
        try:
            conn = await self._checkout(_BEGIN)
            _fresh.add(conn)
            try:
                yield conn
            except BaseException:
                _fresh.discard(conn)
                _queued.pop(conn, None)
                await _rollback(conn)
                raise
            else:
                await _commit(conn)
            finally:
                await self._pool.putconn(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            # Statement errors were translated by the executor; what is left is checkout, commit or rollback.
            raise translate(exc) from exc

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Connection]:
        """A pooled connection on which each statement commits on its own: no BEGIN and COMMIT round trips
        for a unit of work that is one statement (inside a ``unit_of_work()`` it joins that instead)."""
        unit = _joinable(self)
        if unit is not None:
            async with self._joined(unit) as conn:
                yield conn
            return
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


async def _commit(conn: Connection) -> None:
    """COMMIT, with the statements still queued on ``conn`` in the same round trip. A transaction that a
    caught statement error left aborted is not reported committed: PostgreSQL would answer its COMMIT with a
    silent rollback."""
    if conn.info.transaction_status is TransactionStatus.INERROR:
        _queued.pop(conn, None)
        await _rollback(conn)
        raise HetuflowError("the transaction was aborted by an earlier error and was rolled back")
    _fresh.discard(conn)
    queue = _queued.pop(conn, None)
    try:
        if not queue:
            await conn.execute(_COMMIT)
            return
        if any(item.later is not None for item in queue):
            try:
                async with conn.pipeline():  # someone reads rows: each statement needs its own result
                    read = await _send_queued(conn, queue)
                    await conn.execute(_COMMIT)
                for later, cur in read:
                    later._rows = await cur.fetchall()
            except psycopg.Error as exc:
                raise translate(exc, "+".join(item.query.name for item in queue)) from exc
            return
        # One simple-protocol query, so one write and one round trip (a pipeline writes each statement on
        # its own): the queued statements with their values bound here by psycopg, then COMMIT.
        binder = psycopg.AsyncClientCursor(conn)
        text = ";\n".join([*(binder.mogrify(item.query.statement, item.params) for item in queue), "COMMIT"])
        try:
            await conn.execute(text.encode())
        except psycopg.Error as exc:
            raise translate(exc, "+".join(item.query.name for item in queue)) from exc
    except BaseException:
        await _rollback(conn)
        raise


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
    cur = await _run(conn, q, params)
    with _translated(q):
        return await cur.fetchone()


async def fetch_all(conn: Connection, q: Query, params: Params | None = None) -> list[Row]:
    """Run ``q`` and return all its rows as dicts."""
    cur = await _run(conn, q, params)
    with _translated(q):
        return await cur.fetchall()


async def execute(conn: Connection, q: Query, params: Params | None = None) -> int:
    """Run ``q`` for its effect and return the number of rows it touched."""
    return (await _run(conn, q, params)).rowcount


async def execute_later(conn: Connection, q: Query, params: Params | None = None) -> None:
    """Run ``q``, whose result nobody reads, with the next statement on ``conn`` or its COMMIT, in the same
    round trip (at once when ``conn`` is in no transaction, where nothing else may follow). An error it
    raises surfaces there, and fails that transaction."""
    if conn.info.transaction_status is TransactionStatus.IDLE:
        await _run(conn, q, params)
        return
    _queued.setdefault(conn, []).append(_Statement(q, params))


class Later:
    """The rows of a statement sent with a later one (``fetch_later``), readable once that one ran."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Row] | None = None) -> None:
        self._rows = rows

    @property
    def rows(self) -> list[Row]:
        """The statement's rows; RuntimeError while it has not run yet."""
        if self._rows is None:
            raise RuntimeError("read before the statement ran: it travels with the next one or the COMMIT")
        return self._rows

    def first(self) -> Row | None:
        """The first row, or None when the statement returned none."""
        return self.rows[0] if self.rows else None


async def fetch_later(conn: Connection, q: Query, params: Params | None = None) -> Later:
    """Like ``execute_later``, for a statement whose rows are read afterwards: they are there once the next
    statement on ``conn`` (or its COMMIT) ran, the two in one round trip."""
    if conn.info.transaction_status is TransactionStatus.IDLE:
        return Later(await fetch_all(conn, q, params))
    later = Later()
    _queued.setdefault(conn, []).append(_Statement(q, params, later))
    return later


@asynccontextmanager
async def savepoint(conn: Connection) -> AsyncIterator[Connection]:
    """A savepoint of ``conn``'s transaction for the block: an exception leaving it rolls back what the block
    did (and the transaction goes on); normal exit keeps it. The SAVEPOINT travels with the block's first
    statement and the RELEASE with the statement after the block: no round trip of their own. A block that
    starts a transaction needs neither: on failure its transaction restarts."""
    if conn in _fresh and not _queued.get(conn):
        # Nothing sent or queued since BEGIN: going back to the block's start is going back to BEGIN, which
        # needs no savepoint (the API's units of work start so, and their first statement goes alone).
        try:
            yield conn
        except BaseException:
            _queued.pop(conn, None)  # all of it the block's
            if conn not in _fresh:
                try:
                    await conn.execute(_RESTART)
                except psycopg.Error as exc:
                    raise translate(exc, "restart_transaction") from exc
                _fresh.add(conn)
            raise
        return
    name = f"hetuflow_{next(_savepoint_names)}"
    mark = _Statement(Query("savepoint", f"SAVEPOINT {name}"), None)
    _queued.setdefault(conn, []).append(mark)
    try:
        yield conn
    except BaseException:
        queue = _queued.get(conn, [])
        at = _position(queue, mark)
        if at is not None:
            del queue[at:]  # never sent: drop it and what the block queued after it
        else:
            queue.clear()  # all queued after the savepoint was sent: the block's, undone with it
            try:
                await conn.execute(f"ROLLBACK TO SAVEPOINT {name}".encode())
            except psycopg.Error as exc:
                raise translate(exc, "rollback_to_savepoint") from exc
        raise
    queue = _queued.setdefault(conn, [])
    at = _position(queue, mark)
    if at is not None:
        del queue[at]  # never sent: the block's statements (if it queued any) simply join the transaction
    else:
        # Released, so that a long unit of work does not pile up nested savepoints; no round trip of its own.
        queue.append(_Statement(Query("release_savepoint", f"RELEASE SAVEPOINT {name}"), None))


def _position(queue: list[_Statement], item: _Statement) -> int | None:
    return next((index for index, queued in enumerate(queue) if queued is item), None)


class _Statement(NamedTuple):
    query: Query
    params: Params | None
    later: Later | None = None
    """Where its rows go (``fetch_later``); None when nobody reads them."""


# Statements queued on a connection by `execute_later` (and savepoints), sent before its next statement.
_queued: weakref.WeakKeyDictionary[Connection, list[_Statement]] = weakref.WeakKeyDictionary()
# Connections in a transaction that has sent nothing but its BEGIN yet.
_fresh: weakref.WeakSet[Connection] = weakref.WeakSet()
_RESTART: Final = b"ROLLBACK; BEGIN"
_savepoint_names: Final = itertools.count(1)


async def _run(conn: Connection, q: Query, params: Params | None) -> psycopg.AsyncCursor[DictRow]:
    """Execute ``q`` on ``conn``, preceded in one pipeline (one round trip) by the statements queued there."""
    _fresh.discard(conn)
    queue = _queued.pop(conn, None)
    if not queue:
        with _translated(q):
            return await conn.execute(q.statement, params)
    names = "+".join(item.query.name for item in (*queue, _Statement(q, params)))
    try:
        async with conn.pipeline():
            read = await _send_queued(conn, queue)
            cur = await conn.execute(q.statement, params)
        for later, queued_cur in read:
            later._rows = await queued_cur.fetchall()
    except psycopg.Error as exc:
        raise translate(exc, names) from exc
    return cur


async def _send_queued(
    conn: Connection, queue: list[_Statement]
) -> list[tuple[Later, psycopg.AsyncCursor[DictRow]]]:
    """Send ``queue`` inside a pipeline; the cursors whose rows someone reads (``fetch_later``)."""
    read = []
    for item in queue:
        cur = await conn.execute(item.query.statement, item.params)
        if item.later is not None:
            read.append((item.later, cur))
    return read


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
        if key is None:
            return _refused(exc, "refers to something that does not exist", query_name)
        column = key.group(1)
        return InvalidInput(
            f"refers to a {column} that does not exist", [FieldProblem(f"$.{column}", "does not exist")]
        )
    if isinstance(exc, pg_errors.NotNullViolation):
        column = diag.column_name or "?"
        return InvalidInput(f"{column} is required", [FieldProblem(f"$.{column}", "required")])
    if isinstance(exc, pg_errors.IntegrityError | pg_errors.DataError):
        # The database's own words (type names, internal values, "BC" dates) mean nothing to a client and
        # tell it about our schema: it gets ours, and the log keeps PostgreSQL's for the operator.
        words = _DATA_ERRORS.get(exc.sqlstate or "")
        if words is None and exc.sqlstate is None and ("timestamp" in primary or "date" in primary):
            # psycopg itself could not read a time back: PostgreSQL holds years Python's datetime cannot.
            words = _DATA_ERRORS[_DATETIME_OVERFLOW]
        if words is None and constraint:
            words = f"a value breaks the rule {constraint}"  # our own constraint names, chosen to be read
        return _refused(exc, words or "a value cannot be stored in the database", query_name)
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
