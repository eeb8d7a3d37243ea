"""The OpenAPI 3.1 document of the REST API, generated from the declared operations and the core Structs.

Schemas come from ``msgspec.json.schema_components`` over every body, response and query type, so the
constraints that decoding enforces (lengths, patterns, ranges, enums) are exactly the ones the document
states. Routes that are not ``Operation``s because they answer a stream (the live log tail, Server-Sent
Events) are declared as `EventStream` entries and documented the same way, answering ``text/event-stream``.
OpenAPI 3.1 uses JSON Schema 2020-12, which is what msgspec emits, so the schemas are used as they are.
"""

from __future__ import annotations

import dataclasses
import http
from collections.abc import Sequence
from typing import Any

import msgspec

from hetuflow_core.api import Problem
from hetuflow_core.enums import TokenScope
from hetuflow_server.__about__ import __version__
from hetuflow_server.endpoint.api import codec, problems
from hetuflow_server.endpoint.api.operation import API_PREFIX, NoQuery, Operation, Operations, PathParam

__all__ = ["EVENT_STREAM_MEDIA_TYPE", "OPENAPI_PATH", "EventStream", "build_document", "encode_document"]

OPENAPI_PATH = "/api/openapi.json"
_REF_TEMPLATE = "#/components/schemas/{name}"
_SECURITY_SCHEME = "bearerAuth"
_NULL = {"type": "null"}
EVENT_STREAM_MEDIA_TYPE = "text/event-stream"


@dataclasses.dataclass(frozen=True, slots=True)
class EventStream:
    """A ``GET`` route answering Server-Sent Events, served by its own endpoint rather than an `Operation`
    (which answers JSON), and documented here: its path, query, scope and what the stream carries."""

    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    scope: TokenScope
    query: type[msgspec.Struct]
    path_params: tuple[PathParam, ...]
    events: tuple[tuple[str, Any, str], ...]
    """Each kind of event: its name, the type its ``data`` holds as JSON, and what it means."""


_DESCRIPTION = """\
REST API of the hetuflow server. Every operation needs a bearer token (`Authorization: Bearer <token>`):
reading needs the `read` or `admin` scope, everything that changes state needs `admin`. Errors are
`application/problem+json` (RFC 9457) with a stable `type` URI; validation errors list each failing field
in `errors`. Lists are paged: pass `next_cursor` back as `cursor` until it is null."""


def build_document(groups: Sequence[Operations], streams: Sequence[EventStream] = ()) -> dict[str, Any]:
    """The OpenAPI document describing every operation of ``groups`` and every event stream of
    ``streams``."""
    operations = [operation for group in groups for operation in group.operations]
    schema_types = _schema_types([*operations, *streams])
    refs, components = msgspec.json.schema_components(schema_types, ref_template=_REF_TEMPLATE)
    schema_of = dict(zip(schema_types, refs, strict=True))
    # Query Structs only describe parameters: their fields become parameter schemas, not components.
    query_schemas = {
        operation.query: components.pop(operation.query.__name__)
        for operation in operations
        if operation.query is not NoQuery and operation.query.__name__ in components
    }
    query_schemas.update(
        (stream.query, components.pop(stream.query.__name__))
        for stream in streams
        if stream.query.__name__ in components
    )

    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        path_item = paths.setdefault(API_PREFIX + operation.path, {})
        path_item[operation.method.lower()] = _operation_object(operation, schema_of, query_schemas)
    for stream in streams:
        paths.setdefault(API_PREFIX + stream.path, {})["get"] = _stream_object(
            stream, schema_of, query_schemas
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "hetuflow", "version": __version__, "description": _DESCRIPTION},
        "tags": [{"name": group.tag, "description": group.description} for group in groups],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                _SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWE",
                    "description": "A token from `hetuflow-server token create` or `POST /api/v1/tokens`",
                }
            },
        },
        "security": [{_SECURITY_SCHEME: []}],
    }


def _schema_types(operations: Sequence[Operation | EventStream]) -> list[Any]:
    """Every type that needs a schema, once each, in a stable order."""
    types: list[Any] = [Problem]
    for operation in operations:
        candidates = [*(param.type for param in operation.path_params)]
        if isinstance(operation, Operation):
            candidates += [operation.response, operation.body]
        else:
            candidates += [data for _, data, _ in operation.events]
        if operation.query is not NoQuery:
            candidates.append(operation.query)
        types.extend(candidate for candidate in candidates if candidate is not None)
    unique: list[Any] = []
    for type_ in types:
        if type_ not in unique:
            unique.append(type_)
    return unique


def _parameters(
    operation: Operation | EventStream,
    schema_of: dict[Any, dict[str, Any]],
    query_schemas: dict[Any, dict[str, Any]],
) -> list[dict[str, Any]]:
    parameters = [
        {
            "name": param.name,
            "in": "path",
            "required": True,
            "description": f"Identifies the {param.resource}",
            "schema": schema_of[param.type],
        }
        for param in operation.path_params
    ]
    if operation.query is not NoQuery:
        parameters.extend(_query_parameters(query_schemas[operation.query]))
    return parameters


def _stream_object(
    stream: EventStream, schema_of: dict[Any, dict[str, Any]], query_schemas: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    problem = {problems.PROBLEM_MEDIA_TYPE: {"schema": schema_of[Problem]}}
    # Token, scope, query, database; 404 for a path that names no resource.
    errors = sorted({401, 403, 422, 503, *((404,) if stream.path_params else ())})
    # OpenAPI 3.1 has no item schema for sequential media types: `schema` describes one event, as tools read
    # them (an object of the event's fields), with its `data` a JSON document of the event's type.
    events = [
        {
            "type": "object",
            "description": meaning,
            "properties": {
                "event": {"const": name},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": schema_of[data],
                },
                "id": {"type": "string"},
            },
            "required": ["event", "data"],
        }
        for name, data, meaning in stream.events
    ]
    responses: dict[str, Any] = {
        "200": {
            "description": "A stream of Server-Sent Events: "
            + "; ".join(f"`{name}`" for name, _, _ in stream.events),
            "content": {EVENT_STREAM_MEDIA_TYPE: {"schema": {"oneOf": events}}},
        }
    }
    responses.update(
        (str(status), {"description": http.HTTPStatus(status).phrase, "content": problem})
        for status in errors
    )
    return {
        "operationId": stream.operation_id,
        "summary": stream.summary,
        "description": f"{stream.description}\n\nRequires a token of scope `{stream.scope}`.",
        "tags": [stream.tag],
        "parameters": _parameters(stream, schema_of, query_schemas),
        "responses": responses,
    }


def _operation_object(
    operation: Operation, schema_of: dict[Any, dict[str, Any]], query_schemas: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    parameters = _parameters(operation, schema_of, query_schemas)
    result: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": f"{operation.description}\n\nRequires a token of scope `{operation.scope}`.",
        "tags": [operation.tag],
        "parameters": parameters,
        "responses": _responses(operation, schema_of),
    }
    if operation.body is not None:
        result["requestBody"] = {
            "required": not operation.body_optional,
            "content": {codec.JSON_MEDIA_TYPE: {"schema": schema_of[operation.body]}},
        }
    return result


def _query_parameters(struct_schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(struct_schema.get("required", ()))
    parameters = []
    for name, schema in struct_schema["properties"].items():
        schema = _without_null(schema)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
        }
        if "description" in schema:
            parameter["description"] = schema["description"]
        if schema.get("type") == "array":
            # ?status=a&status=b: each value is its own occurrence of the parameter.
            parameter["style"] = "form"
            parameter["explode"] = True
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch and the null default."""
    schema = dict(schema)
    if schema.get("default", ...) is None:
        del schema["default"]
    branches = schema.get("anyOf")
    if branches is not None and _NULL in branches:
        rest = [branch for branch in branches if branch != _NULL]
        del schema["anyOf"]
        if len(rest) == 1:
            schema.update(rest[0])
        else:
            schema["anyOf"] = rest
    return schema


def _responses(operation: Operation, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if operation.response is None:
        responses["204"] = {"description": "Done; no content"}
    else:
        success: dict[str, Any] = {
            "description": http.HTTPStatus(operation.status).phrase,
            "content": {codec.JSON_MEDIA_TYPE: {"schema": schema_of[operation.response]}},
        }
        if operation.location is not None:
            success["headers"] = {
                "Location": {"description": "Path of the created resource", "schema": {"type": "string"}}
            }
        responses[str(operation.status)] = success
    problem_ref = schema_of[Problem]
    for status in _error_statuses(operation):
        responses[str(status)] = {
            "description": http.HTTPStatus(status).phrase,
            "content": {problems.PROBLEM_MEDIA_TYPE: {"schema": problem_ref}},
        }
    return responses


def _error_statuses(operation: Operation) -> list[int]:
    """Every error status the operation can answer, derived from what it decodes and declares."""
    statuses = {401, 403, 422, 503}  # token, scope, query parameters, database
    if operation.path_params:
        statuses.add(404)
    if operation.body is not None:
        statuses.update({400, 413, 415})
    statuses.update(operation.extra_errors)
    return sorted(statuses)


def encode_document(document: dict[str, Any]) -> bytes:
    """The document as compact JSON."""
    return msgspec.json.encode(document)
