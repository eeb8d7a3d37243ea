"""Hypothesis strategies for any hetuflow-core type, derived from msgspec's own view of it.

``from_type`` reads ``msgspec.inspect.type_info`` — the same constraints decoding enforces (lengths,
patterns, bounds, enum values, tags) — so every value it draws is one a peer could legitimately send,
and a round trip through ``encode``/``decode`` must give it back unchanged. Hypothesis' own
``from_type`` would ignore the ``Meta`` constraints and draw values decoding rightly refuses.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

__all__ = ["from_type", "json_values"]

# Collections and strings are kept short: size adds run time, not coverage of the codec.
_MAX_ITEMS = 4
_MAX_CHARS = 40
_MAX_BYTES = 64
_INT64 = (-(2**63), 2**63 - 1)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(*_INT64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=_MAX_CHARS),
    lambda children: (
        st.lists(children, max_size=_MAX_ITEMS)
        | st.dictionaries(st.text(max_size=10), children, max_size=_MAX_ITEMS)
    ),
    max_leaves=12,
)
"""Any JSON value msgspec encodes and decodes back to an equal value (``Any`` fields)."""


def from_type(tp: Any) -> st.SearchStrategy[Any]:
    """Values of ``tp`` (a Struct, a frame union, an annotated type …) that satisfy its constraints."""
    return _strategy(mi.type_info(tp))


@cache
def _struct(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    required = {f.name: _strategy(f.type) for f in info.fields if f.required}
    optional = {f.name: _strategy(f.type) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda kwargs: cls(**kwargs))


def _strategy(info: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(info, mi.Metadata):
        return _strategy(info.type)
    if isinstance(info, mi.StructType):
        return _struct(info.cls)
    if isinstance(info, mi.UnionType):
        return st.one_of([_strategy(t) for t in info.types])
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.IntType):
        low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else _INT64[0])
        high = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else _INT64[1])
        return st.integers(low, high)
    if isinstance(info, mi.FloatType):
        return st.floats(
            min_value=info.ge if info.ge is not None else info.gt,
            max_value=info.le if info.le is not None else info.lt,
            exclude_min=info.gt is not None,
            exclude_max=info.lt is not None,
            allow_nan=False,
            allow_infinity=False,
        )
    if isinstance(info, mi.StrType):
        return _text(info)
    if isinstance(info, mi.BytesType):
        low = info.min_length or 0
        return st.binary(min_size=low, max_size=max(low, min(info.max_length or _MAX_BYTES, _MAX_BYTES)))
    if isinstance(info, mi.DateTimeType):
        # msgspec keeps microseconds and the offset; UTC-aware values compare equal after the trip.
        return st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
        )
    if isinstance(info, mi.UUIDType):
        return st.uuids()
    if isinstance(info, mi.EnumType):
        return st.sampled_from(list(info.cls))
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.AnyType):
        return json_values
    if isinstance(info, mi.ListType):
        low = info.min_length or 0
        return st.lists(
            _strategy(info.item_type),
            min_size=low,
            max_size=max(low, min(info.max_length or _MAX_ITEMS, _MAX_ITEMS)),
        )
    if isinstance(info, mi.DictType):
        return st.dictionaries(
            _strategy(info.key_type),
            _strategy(info.value_type),
            min_size=info.min_length or 0,
            max_size=min(info.max_length or _MAX_ITEMS, _MAX_ITEMS),
        )
    raise TypeError(f"no strategy for {info!r}; extend core_strategies")


def _text(info: mi.StrType) -> st.SearchStrategy[str]:
    low = info.min_length or 0
    high = min(info.max_length or _MAX_CHARS, max(low, _MAX_CHARS))
    if info.pattern is None:
        return st.text(min_size=low, max_size=high)
    pattern = re.compile(info.pattern)
    return st.from_regex(pattern).filter(lambda s: low <= len(s) <= high and pattern.search(s) is not None)
