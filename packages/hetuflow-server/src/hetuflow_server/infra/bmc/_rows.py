"""Row ↔ Struct helpers shared by the BMCs: JSON parameters in, hetuflow-core Structs out.

Rows come back as dicts (``dict_row``) with jsonb already parsed, so ``msgspec.convert`` validates and builds
the Struct in one step, decoding nested config objects (``JobConfig``, ``AgentCapabilities`` ...) on the way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
from psycopg.types.json import Jsonb

from hetuflow_server.errors import NotFound
from hetuflow_server.infra.db import Row

__all__ = ["jsonb", "jsonb_or_none", "many", "many_json", "one", "required"]

T = TypeVar("T")


def jsonb(value: Any) -> Jsonb:
    """A jsonb parameter from a Struct, dict or list (Structs, UUIDs and datetimes become JSON builtins)."""
    return Jsonb(msgspec.to_builtins(value))


def jsonb_or_none(value: Any) -> Jsonb | None:
    """Like ``jsonb`` but keeps None as SQL NULL."""
    return None if value is None else jsonb(value)


def one(row: Row, type_: type[T]) -> T:
    """Convert one row into ``type_``."""
    return msgspec.convert(row, type_)


def many(rows: Iterable[Row], type_: type[T]) -> list[T]:
    """Convert rows into a list of ``type_``."""
    return msgspec.convert(list(rows), list[type_])  # type: ignore[valid-type]


def many_json(row: Row | None, type_: type[T]) -> list[T]:
    """The ``rows`` column of ``row``, a JSON array of rows that PostgreSQL built (``json_agg``), decoded
    into ``type_`` in one pass: for wide rows, much cheaper than psycopg's per-column loaders plus
    ``many``."""
    if row is None:
        return []
    return msgspec.json.decode(row["rows"], type=list[type_])  # type: ignore[valid-type]


def required(row: Row | None, type_: type[T], resource: str, key: object) -> T:
    """Convert ``row`` into ``type_``, or raise NotFound(resource, key) when the query found nothing."""
    if row is None:
        raise NotFound(resource, key)
    return one(row, type_)
