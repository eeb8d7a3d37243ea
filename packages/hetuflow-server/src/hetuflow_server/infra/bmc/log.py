"""LogBmc: statements on ``sched_task_log`` — idempotent chunk inserts within each attempt's quota, and cursor
reads bounded in chunks and bytes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import LogStream
from hetuflow_core.task import TaskLogEntry
from hetuflow_server.infra import db
from hetuflow_server.infra.sql import query

__all__ = ["LogBmc", "LogQuota", "NewLogChunk", "StoredLogChunk"]

_INSERT_MANY = query("insert_log_chunks")
_READ = query("read_logs")
_DELETE_BEFORE = query("delete_logs_before")


class NewLogChunk(msgspec.Struct, kw_only=True, frozen=True):
    """Raw output bytes of one stream of an attempt, numbered per stream by the agent."""

    instance_id: UUID
    stream: LogStream
    seq: int
    content: bytes
    ts: datetime | None = None
    agent_id: str | None = None
    """The agent that sent it: stored only if that agent runs the instance (None: the server, no check)."""


class LogQuota(msgspec.Struct, kw_only=True, frozen=True):
    """What an attempt may store: ``max_bytes`` of content in all, and chunks until ``grace_secs`` after it
    ended."""

    max_bytes: int
    grace_secs: float

    @property
    def marker(self) -> bytes:
        """What is stored in place of the chunk that crosses ``max_bytes``."""
        return (
            f"\n[hetuflow: this attempt's log reached {self.max_bytes} bytes;"
            " the rest of its output was not stored]\n"
        ).encode()


class StoredLogChunk(msgspec.Struct, kw_only=True, frozen=True):
    """A chunk as read back: ``position`` orders all chunks of an attempt and is the read cursor."""

    position: int
    entry: TaskLogEntry


class LogBmc:
    """Log chunks of attempts."""

    @staticmethod
    async def insert_many(
        conn: db.Connection, chunks: Sequence[NewLogChunk], quota: LogQuota
    ) -> set[tuple[UUID, str, int]]:
        """Store chunks in one statement; resends, chunks of unknown instances, chunks an agent sent for an
        instance it does not run and chunks of attempts that ended more than ``quota.grace_secs`` ago are
        skipped. An attempt stores at most ``quota.max_bytes``: the chunk that crosses it is stored as the
        marker, and nothing of that attempt after it.

        Returns the (instance_id, stream, seq) keys actually stored.
        """
        if not chunks:
            return set()
        params = {
            "instance_ids": [c.instance_id for c in chunks],
            "streams": [c.stream.value for c in chunks],
            "seqs": [c.seq for c in chunks],
            "tss": [c.ts for c in chunks],
            "contents": [c.content for c in chunks],
            "agent_ids": [c.agent_id for c in chunks],
            "max_bytes": quota.max_bytes,
            "grace_secs": quota.grace_secs,
            "marker": quota.marker,
        }
        rows = await db.fetch_all(conn, _INSERT_MANY, params)
        return {(row["instance_id"], row["stream"], row["seq"]) for row in rows}

    @staticmethod
    async def read(
        conn: db.Connection, instance_id: UUID, *, after_position: int, limit: int, max_bytes: int
    ) -> list[StoredLogChunk]:
        """Up to ``limit`` chunks of an attempt after ``after_position``, and no more once they hold
        ``max_bytes`` of content (at least one); content decoded as UTF-8 with invalid bytes replaced
        (U+FFFD)."""
        params = {
            "instance_id": instance_id,
            "after_id": after_position,
            "limit": limit,
            "max_bytes": max_bytes,
        }
        rows = await db.fetch_all(conn, _READ, params)
        return [
            StoredLogChunk(
                position=row["id"],
                entry=TaskLogEntry(
                    instance_id=row["instance_id"],
                    stream=LogStream(row["stream"]),
                    seq=row["seq"],
                    ts=row["ts"],
                    content=bytes(row["content"]).decode("utf-8", errors="replace"),
                ),
            )
            for row in rows
        ]

    @staticmethod
    async def delete_before(conn: db.Connection, before: datetime, *, limit: int) -> int:
        """Retention: delete up to ``limit`` chunks older than ``before``; the number deleted."""
        return await db.execute(conn, _DELETE_BEFORE, {"before": before, "limit": limit})
