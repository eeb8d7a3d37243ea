"""Paged lists: `read_page`, and opaque cursors that hold the sort key of a page's last item.

A cursor is URL-safe base64 of a small JSON array. Clients pass ``next_cursor`` back unchanged; anything else
that does not decode is ``InvalidInput`` at ``$.cursor``, never a server error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec

from hetuflow_core.api import Page
from hetuflow_server.errors import FieldProblem, InvalidInput
from hetuflow_server.infra.db import Connection, ModelManager

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "check_limit",
    "decode_cursor",
    "decode_id_cursor",
    "decode_serial_cursor",
    "decode_time_cursor",
    "decode_time_id_cursor",
    "encode_cursor",
    "make_page",
    "read_page",
]

T = TypeVar("T")
C = TypeVar("C")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_time_id = msgspec.json.Decoder(tuple[datetime, UUID])
_id = msgspec.json.Decoder(tuple[UUID])
_time = msgspec.json.Decoder(tuple[datetime])
_serial = msgspec.json.Decoder(tuple[Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]])


def _bad_cursor(reason: str) -> InvalidInput:
    return InvalidInput(f"invalid cursor: {reason}", [FieldProblem("$.cursor", reason)])


def encode_cursor(*key: Any) -> str:
    """A cursor for the sort key ``key`` (UUIDs and datetimes allowed)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(list(key))).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, decoder: msgspec.json.Decoder[T]) -> T:
    """The sort key in ``cursor``, decoded with ``decoder``; else InvalidInput at ``$.cursor``."""
    if len(cursor) > 512:
        raise _bad_cursor("too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise _bad_cursor("not a cursor returned by this API") from None


def decode_time_id_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """(timestamp, id) cursor, or None."""
    if cursor is None:
        return None
    at, key = decode_cursor(cursor, _time_id)
    if at.tzinfo is None:
        raise _bad_cursor("not a cursor returned by this API")
    return at, key


def decode_id_cursor(cursor: str | None) -> UUID | None:
    """Id cursor, or None."""
    return None if cursor is None else decode_cursor(cursor, _id)[0]


def decode_serial_cursor(cursor: str | None) -> int | None:
    """Cursor of a list in the order of a bigint identity column, or None."""
    return None if cursor is None else decode_cursor(cursor, _serial)[0]


def decode_time_cursor(cursor: str | None) -> datetime | None:
    """Timestamp cursor, or None."""
    if cursor is None:
        return None
    (at,) = decode_cursor(cursor, _time)
    if at.tzinfo is None:
        raise _bad_cursor("not a cursor returned by this API")
    return at


def check_limit(limit: int) -> int:
    """``limit`` if within 1..MAX_LIMIT, else InvalidInput at ``$.limit``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_LIMIT}", [FieldProblem("$.limit", f"must be 1..{MAX_LIMIT}")]
        )
    return limit


def make_page(rows: Sequence[T], limit: int, key: Callable[[T], tuple[Any, ...]]) -> Page[T]:
    """A page from ``rows`` fetched with ``limit + 1``: the extra row only says that another page exists."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(*key(items[-1])) if len(rows) > limit and items else None
    return Page(items=items, next_cursor=next_cursor)


async def read_page(
    db: ModelManager,
    cursor: str | None,
    limit: int,
    *,
    decode: Callable[[str | None], C],
    fetch: Callable[[Connection, C, int], Awaitable[Sequence[T]]],
    key: Callable[[T], tuple[Any, ...]],
) -> Page[T]:
    """One page of a list: check ``limit``, ``decode`` the cursor, ``fetch(conn, after, limit + 1)`` rows in
    one transaction, and make the page whose ``next_cursor`` is the ``key`` of its last item."""
    limit = check_limit(limit)
    after = decode(cursor)
    async with db.transaction() as conn:
        rows = await fetch(conn, after, limit + 1)
    return make_page(rows, limit, key)
