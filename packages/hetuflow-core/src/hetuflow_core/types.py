"""Constrained field types shared by the models.

Constraints live on the types (``msgspec.Meta``) so that decoding enforces them and the exported JSON
Schema / OpenAPI document states them; no model repeats a bound.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "AgentId",
    "Count",
    "Labels",
    "Name",
    "Namespace",
    "Parameters",
    "Priority",
    "Seconds",
]

Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="Letters, digits, '_', '.', '-'; starts with a letter or digit",
        examples=["nightly-report"],
    ),
]
Namespace = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$", examples=["default"]),
]
AgentId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-:]*$",
        description="Chosen by the agent, stable across restarts",
        examples=["worker-01"],
    ),
]
Labels = Annotated[
    dict[
        Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.\-/]+$")],
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
Count = Annotated[int, msgspec.Meta(ge=0)]
