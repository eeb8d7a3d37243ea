"""Pages over short, fully loaded lists (agents, servers, tokens, a task's attempts).

The services return these lists whole because they are small; the API still answers every list with the same
``Page`` shape and the same ``cursor``/``limit`` parameters, so clients page everything alike. The cursor is
the key of the last item of the previous page (URL-safe base64), and items are in the service's order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from hetuflow_core.api import Page
from hetuflow_server import errors

__all__ = ["page_of"]

T = TypeVar("T")


# Marks our cursors, so that a string that merely happens to be valid base64 is refused, not misread.
_MARK = "k:"


def _encode(key: str) -> str:
    return base64.urlsafe_b64encode((_MARK + key).encode()).decode("ascii").rstrip("=")


def _decode(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        text = ""
    if not text.startswith(_MARK):
        message = "not a cursor returned by this API"
        raise errors.InvalidInput(f"invalid cursor: {message}", [errors.FieldProblem("$.cursor", message)])
    return text.removeprefix(_MARK)


def page_of(items: Sequence[T], key: Callable[[T], str], cursor: str | None, limit: int) -> Page[T]:
    """The ``limit`` items following the one whose key is in ``cursor`` (from the start without a cursor).

    A cursor whose item has gone meanwhile continues after the position it would have had, which keeps
    paging stable when the service orders by that key.
    """
    start = 0
    if cursor is not None:
        after = _decode(cursor)
        keys = [key(item) for item in items]
        start = next((index + 1 for index, k in enumerate(keys) if k == after), None) or sum(
            1 for k in keys if k <= after
        )
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return Page(items=chunk, next_cursor=_encode(key(chunk[-1])) if more and chunk else None)
