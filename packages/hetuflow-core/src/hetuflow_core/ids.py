"""Identifiers: time-ordered UUIDv7 values and wall-clock helpers shared by every package.

UUIDv7 keeps primary keys roughly in insertion order, which keeps B-tree indexes compact and makes
cursor pagination by id follow creation time. Python 3.11 has no ``uuid.uuid7``, so we build one here
(RFC 9562 §5.7: 48-bit Unix milliseconds, version and variant bits, 74 random bits).
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_message_id", "now_ms", "uuid7"]


def uuid7(ms: int | None = None) -> uuid.UUID:
    """Return a new UUIDv7 for the current time, or for ``ms`` milliseconds since the Unix epoch."""
    unix_ms = time.time_ns() // 1_000_000 if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    return uuid.UUID(int=value)


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the unit of every protocol timestamp."""
    return time.time_ns() // 1_000_000


def new_message_id() -> str:
    """A fresh protocol message id (32 hex characters of a UUIDv7)."""
    return uuid7().hex
