"""Query parameter types shared by the list operations: paging and time bounds.

Each list operation declares its query string as a Struct deriving from ``PageQuery``; the constraints on
these types are enforced by ``codec.decode_query`` and published in the OpenAPI document alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

__all__ = ["Cursor", "Limit", "PageQuery", "Timestamp"]

Cursor = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=512,
        description="Opaque position returned as `next_cursor` by the previous page",
    ),
]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000, description="Largest number of items on the page")]
Timestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 date-time with an offset (encode `+` as `%2B` in a query)"),
]


class PageQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Paging parameters every list operation takes."""

    cursor: Cursor | None = None
    limit: Limit = 100
