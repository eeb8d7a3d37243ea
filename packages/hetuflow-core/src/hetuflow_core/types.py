r"""Constrained field types shared by the models.

Constraints live on the types (``msgspec.Meta``) so that decoding enforces them and the exported JSON
Schema / OpenAPI document states them; no model repeats a bound.

Patterns end in ``(?!\n)$`` rather than ``$``: msgspec matches with ``re.search``, where ``$`` also
matches just before a trailing newline, so ``"name\n"`` would pass. ``\Z`` would say it more briefly
but is not ECMA-262, the regex dialect of JSON Schema; the lookahead means the same in both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "AgentId",
    "AwareDatetime",
    "Count",
    "Int32",
    "Labels",
    "Name",
    "Namespace",
    "Parameters",
    "Priority",
    "Seconds",
]

INT32_MAX: Final = 2**31 - 1
"""Largest PostgreSQL ``integer``; bounds counters and codes stored in such columns."""
INT64_MAX: Final = 2**63 - 1
"""Largest PostgreSQL ``bigint``. Every integer a client sends is bounded, because msgspec would
otherwise decode a 400-digit number into a Python ``int`` that no column can hold."""

Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(?!\n)$",
        description="Letters, digits, '_', '.', '-'; starts with a letter or digit",
        examples=["nightly-report"],
    ),
]
Namespace = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*(?!\n)$", examples=["default"]),
]
AgentId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-:]*(?!\n)$",
        description="Chosen by the agent, stable across restarts",
        examples=["worker-01"],
    ),
]
Labels = Annotated[
    dict[
        Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.\-/]+(?!\n)$")],
        Annotated[str, msgspec.Meta(max_length=256)],
    ],
    msgspec.Meta(max_length=64, description="Key/value labels used for routing", examples=[{"gpu": "yes"}]),
]
Parameters = Annotated[
    dict[str, Any],
    msgspec.Meta(description="Free-form JSON object handed to the process as HETUFLOW_PARAMS"),
]
Priority = Annotated[int, msgspec.Meta(ge=-1000, le=1000, description="Higher runs first")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=31_536_000)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Int32 = Annotated[int, msgspec.Meta(ge=-INT32_MAX - 1, le=INT32_MAX)]
AwareDatetime = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 with an offset; a time without one names no instant"),
]
