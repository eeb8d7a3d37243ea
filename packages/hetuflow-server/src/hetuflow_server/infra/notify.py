"""LISTEN/NOTIFY between servers: channel names, ``notify`` inside a transaction, and the ``Listener``.

Writers call ``notify`` in the transaction that made the change, so the wake-up is delivered exactly when the
change becomes visible (PostgreSQL sends notifications at commit and drops them on rollback). Every server
runs one ``Listener``: its own autocommit connection (never one from the pool, which would be returned and
reused), LISTENing on the channels it has callbacks for, reconnecting with backoff after any failure.
Notifications sent while it was disconnected are lost, so the ``on_connect`` hook lets consumers catch up (run
their safety poll) after every (re)connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql

from hetuflow_core.enums import AgentCommandKind
from hetuflow_core.types import Labels
from hetuflow_server.infra import db
from hetuflow_server.infra.sql import query

__all__ = [
    "AGENT_CMD_CHANNEL",
    "ATTEMPTS_ENDED",
    "CHANNELS",
    "MANUAL_TASKS",
    "NOTIFICATION_CHANNEL",
    "SCHEDULE_CHANNEL",
    "TOKEN_CHANNEL",
    "WORK_CHANNEL",
    "AgentCommandNotice",
    "Listener",
    "cancel_on_agent",
    "decode_agent_command",
    "encode_agent_command",
    "notify",
    "schedules_changed",
    "token_revoked",
    "work_added",
]

logger = logging.getLogger(__name__)

WORK_CHANNEL: Final = "hetuflow_work"
"""New due work or freed capacity: dispatchers wake and claim."""
MANUAL_TASKS: Final = "manual"
"""Payload of a ``WORK_CHANNEL`` notice that only announces triggered tasks: nothing a daemon waits for."""
ATTEMPTS_ENDED: Final = "ended"
"""Payload of a ``WORK_CHANNEL`` notice of attempts that ended without ending a daemon run: capacity was
freed, nothing a daemon waits for either."""
SCHEDULE_CHANNEL: Final = "hetuflow_schedule"
"""A job or schedule changed: the generator (on the leader) wakes."""
AGENT_CMD_CHANNEL: Final = "hetuflow_agent_cmd"
"""A command for an agent; the server holding its connection forwards it (payload: ``AgentCommandNotice``)."""
TOKEN_CHANNEL: Final = "hetuflow_token"
"""A token was revoked (payload: its jti): every server forgets it and ends the connections it opened."""
NOTIFICATION_CHANNEL: Final = "hetuflow_notification"
"""A notification was queued (sent by the outbox triggers of the database): the notifiers wake."""
CHANNELS: Final = (WORK_CHANNEL, SCHEDULE_CHANNEL, AGENT_CMD_CHANNEL, TOKEN_CHANNEL, NOTIFICATION_CHANNEL)

MAX_PAYLOAD_BYTES: Final = 7999  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
CONNECT_TIMEOUT_SECS: Final = 10
HEALTH_CHECK_INTERVAL_SECS: Final = 30.0
MIN_BACKOFF_SECS: Final = 0.2
MAX_BACKOFF_SECS: Final = 10.0

_NOTIFY = query("notify")

Callback = Callable[[str], Awaitable[None]]
ConnectHook = Callable[[], Awaitable[None]]


class AgentCommandNotice(msgspec.Struct, kw_only=True, frozen=True):
    """Payload of ``AGENT_CMD_CHANNEL``: which agent, and the command to forward to it."""

    agent_id: str
    command: AgentCommandKind
    instance_id: UUID | None = None
    labels: Labels | None = None
    reason: str | None = None


def encode_agent_command(notice: AgentCommandNotice) -> str:
    """The NOTIFY payload of an agent command."""
    return msgspec.json.encode(notice).decode("utf-8")


def decode_agent_command(payload: str) -> AgentCommandNotice | None:
    """An agent command from a NOTIFY payload; None (logged) when the payload is not one."""
    try:
        return msgspec.json.decode(payload, type=AgentCommandNotice)
    except msgspec.DecodeError as exc:
        logger.warning("ignoring malformed agent command notification: %s", exc)
        return None


async def notify(conn: db.Connection, channel: str, payload: str = "") -> None:
    """Queue a notification on ``channel``, sent when ``conn``'s transaction commits."""
    if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"NOTIFY payload of {len(payload)} characters is too large")
    await db.execute_later(conn, _NOTIFY, {"channel": channel, "payload": payload})


async def work_added(conn: db.Connection, *, daemons: bool = True) -> None:
    """Wake the dispatchers: due work was added or capacity freed (sent at commit; PostgreSQL folds repeats
    of one transaction into one notification). ``daemons=False`` says that the change ended no daemon run,
    so the daemon supervisor need not look (a busy fleet ends many attempts a second)."""
    await notify(conn, WORK_CHANNEL, "" if daemons else ATTEMPTS_ENDED)


async def schedules_changed(conn: db.Connection, **ids: UUID) -> None:
    """Wake the task generator and the daemon supervisor about a job or schedule change (sent at commit)."""
    await notify(conn, SCHEDULE_CHANNEL, json.dumps({k: str(v) for k, v in ids.items()}))


async def cancel_on_agent(
    conn: db.Connection, *, agent_id: str, instance_id: UUID, reason: str | None
) -> None:
    """Queue a cancel command for attempt ``instance_id`` on ``agent_id`` (sent at commit; the server holding
    the agent's connection forwards it, and the agent kills the attempt's process group)."""
    notice = AgentCommandNotice(
        agent_id=agent_id, command=AgentCommandKind.CANCEL, instance_id=instance_id, reason=reason
    )
    await notify(conn, AGENT_CMD_CHANNEL, encode_agent_command(notice))


async def token_revoked(conn: db.Connection, jti: UUID) -> None:
    """Tell every server that token ``jti`` was revoked (sent at commit)."""
    await notify(conn, TOKEN_CHANNEL, str(jti))


class Listener:
    """LISTENs on channels over a dedicated connection and hands each payload to the channel's callbacks.

    Callbacks run one at a time on the listener's task and should be quick (set an event, queue the payload);
    an exception in one is logged and does not stop the others. ``start``/``stop`` belong to the application.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        on_connect: ConnectHook | None = None,
        health_check_interval_secs: float = HEALTH_CHECK_INTERVAL_SECS,
        min_backoff_secs: float = MIN_BACKOFF_SECS,
        max_backoff_secs: float = MAX_BACKOFF_SECS,
        name: str = "hetuflow-listener",
    ) -> None:
        self._conninfo = conninfo
        self._connect_hooks: list[ConnectHook] = [] if on_connect is None else [on_connect]
        self._health_check_interval_secs = health_check_interval_secs
        self._min_backoff_secs = min_backoff_secs
        self._max_backoff_secs = max_backoff_secs
        self._name = name
        self._callbacks: dict[str, list[Callback]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._backend_pid: int | None = None
        self.connections = 0
        """How many times a connection was established (1 + reconnections)."""

    def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(payload)`` for every notification on ``channel``. Subscribe before ``start``."""
        if self._task is not None:
            raise RuntimeError("subscribe before starting the listener")
        self._callbacks.setdefault(channel, []).append(callback)

    def add_connect_hook(self, hook: ConnectHook) -> None:
        """Call ``hook()`` after every (re)connection, to catch up with what may have been missed."""
        if self._task is not None:
            raise RuntimeError("add hooks before starting the listener")
        self._connect_hooks.append(hook)

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up."""
        return self._connected.is_set()

    @property
    def backend_pid(self) -> int | None:
        """Server process id of the current LISTEN connection (for diagnostics and tests)."""
        return self._backend_pid

    def start(self) -> None:
        """Start the listening loop as a named task; it connects in the background."""
        if self._task is not None:
            raise RuntimeError("listener already started")
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def wait_connected(self, timeout_secs: float) -> None:
        """Wait until the LISTEN connection is up; TimeoutError after ``timeout_secs``."""
        async with asyncio.timeout(timeout_secs):
            await self._connected.wait()

    async def run(self) -> None:
        """Listen until cancelled (a background loop of the application container)."""
        self.start()
        try:
            await asyncio.Event().wait()  # the listener runs on its own task until this loop is stopped
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # wait() neither raises the task's CancelledError nor swallows a cancellation of the caller.
        await asyncio.wait({task})

    async def _run(self) -> None:
        backoff = self._min_backoff_secs
        while True:
            connections_before = self.connections
            try:
                await self._listen_once()
            except (psycopg.Error, OSError) as exc:
                logger.warning("LISTEN connection failed: %s", exc)
            finally:
                self._connected.clear()
                self._backend_pid = None
            if self.connections > connections_before:
                backoff = self._min_backoff_secs  # it worked for a while: a fresh failure starts small again
            # Jitter keeps a fleet of servers from reconnecting in lockstep after a database restart.
            delay = random.uniform(backoff / 2, backoff)
            logger.info("reconnecting LISTEN connection in %.2fs", delay)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self._max_backoff_secs)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECS
        ) as conn:
            for channel in self._callbacks:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._backend_pid = conn.info.backend_pid
            self.connections += 1
            self._connected.set()
            logger.info("listening on %s", ", ".join(self._callbacks) or "no channel")
            for hook in self._connect_hooks:
                await _guarded(hook, None, "on_connect hook")
            while True:
                async for note in conn.notifies(timeout=self._health_check_interval_secs):
                    for callback in self._callbacks.get(note.channel, ()):
                        await _guarded(callback, note.payload, note.channel)
                # No notification for a while: prove the connection is alive (raises if it is not).
                await conn.execute(sql.SQL("SELECT 1"))


async def _guarded(func: Callable[..., Awaitable[None]], payload: str | None, what: str) -> None:
    """Run one callback; its failure is logged and never stops the listener."""
    try:
        await (func() if payload is None else func(payload))
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("listener callback for %s failed", what)
