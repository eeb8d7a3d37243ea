"""JSON Schema (draft 2020-12) of every public model, for the OpenAPI document and for other languages.

The schemas come straight from the msgspec Structs, so the constraints they state (lengths, patterns,
bounds, required fields, ``additionalProperties: false`` on request bodies) are exactly the ones
decoding enforces. Enums and nested Structs become shared components referenced by ``$ref``; the server
places them under ``#/components/schemas`` of its OpenAPI 3.1 document (``openapi_components``), anyone
else can use the self-contained ``json_schema_document()``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Final

import msgspec

import hetuflow_core
from hetuflow_core import protocol

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "json_schema",
    "json_schema_document",
    "json_schemas",
    "openapi_components",
    "public_types",
]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
"""The dialect msgspec emits, which is also the dialect of OpenAPI 3.1."""

_DEFS_REF: Final = "#/$defs/{name}"

# The three frame unions are not classes, so they are named here to get a schema of their own.
_PROTOCOL_UNIONS: Final[dict[str, Any]] = {
    "Message": protocol.Message,
    "AgentMessage": protocol.AgentMessage,
    "ServerMessage": protocol.ServerMessage,
}


def public_types() -> tuple[type[Any], ...]:
    """Every public Struct and enum: those of ``hetuflow_core.__all__``, then the protocol's frames."""
    found: list[type[Any]] = []
    for module in (hetuflow_core, protocol):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, msgspec.Struct | enum.Enum) and obj not in found:
                found.append(obj)
    return tuple(found)


def json_schema(type_: Any) -> dict[str, Any]:
    """A self-contained schema of one type (a Struct, an enum, ``Page[Job]``, a frame union …)."""
    schema = msgspec.json.schema(type_)
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def json_schemas(types: Iterable[Any] | None = None) -> dict[str, Any]:
    """Name → schema of ``types`` (default: ``public_types()`` and the protocol unions), plus every
    Struct and enum they reference.

    The schemas refer to each other as ``#/$defs/<name>``, so the result is meant to sit under the
    ``$defs`` of one document (``json_schema_document`` does that).
    """
    if types is None:
        return _default_schemas()
    _, components = msgspec.json.schema_components(tuple(types), ref_template=_DEFS_REF)
    return components


def json_schema_document(types: Iterable[Any] | None = None) -> dict[str, Any]:
    """One JSON Schema document whose ``$defs`` hold ``json_schemas(types)``.

    Validate an instance of, say, ``Job`` against ``{**document, "$ref": "#/$defs/Job"}``.
    """
    return {"$schema": JSON_SCHEMA_DIALECT, "$defs": json_schemas(types)}


def openapi_components(
    types: Iterable[Any], ref_template: str = "#/components/schemas/{name}"
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Schemas of ``types`` for an OpenAPI 3.1 document.

    Returns one schema per type, in order (a ``$ref`` for Structs and enums, an inline schema for
    anything else, e.g. ``list[str]``), and the components they reference, keyed by name. Generic
    Structs get a name per parameter: ``Page[Job]`` becomes component ``Page_Job_``.
    """
    schemas, components = msgspec.json.schema_components(tuple(types), ref_template=ref_template)
    return list(schemas), components


def _default_schemas() -> dict[str, Any]:
    unions = tuple(_PROTOCOL_UNIONS.values())
    schemas, components = msgspec.json.schema_components((*unions, *public_types()), ref_template=_DEFS_REF)
    for name, schema in zip(_PROTOCOL_UNIONS, schemas, strict=False):
        components[name] = schema
    return dict(sorted(components.items()))
