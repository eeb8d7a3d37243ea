"""The exported JSON Schemas cover every public Struct, are valid draft 2020-12, and agree with msgspec."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from core_strategies import from_type
from hypothesis import given, settings
from hypothesis import strategies as st

import hetuflow_core
from hetuflow_core import Job, JobCreate, Page, protocol, schema

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - the package's `test` dependency group installs it
    jsonschema_rs = None  # type: ignore[assignment]

needs_validator = pytest.mark.skipif(
    jsonschema_rs is None,
    reason="jsonschema-rs missing: install the `test` dependency group of hetuflow-core",
)
DOCUMENT = schema.json_schema_document()
STRUCTS = [t for t in schema.public_types() if issubclass(t, msgspec.Struct)]


def validator(name: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator({**DOCUMENT, "$ref": f"#/$defs/{name}"}, validate_formats=True)


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_every_public_struct_and_frame_has_a_schema() -> None:
    public = {
        name
        for module in (hetuflow_core, protocol)
        for name in module.__all__
        if isinstance(obj := getattr(module, name), type) and issubclass(obj, msgspec.Struct)
    }
    assert public <= set(DOCUMENT["$defs"])
    assert {"Message", "AgentMessage", "ServerMessage", "JobStatus", "TaskStatus"} <= set(DOCUMENT["$defs"])
    assert {t.__name__ for t in STRUCTS} == public


def test_document_is_self_contained_json() -> None:
    assert DOCUMENT["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(json.dumps(DOCUMENT)) == DOCUMENT
    assert {ref.removeprefix("#/$defs/") for ref in _refs(DOCUMENT)} <= set(DOCUMENT["$defs"])


@needs_validator
@pytest.mark.parametrize(
    "document", [DOCUMENT, schema.json_schema(Job), schema.json_schema(protocol.Message)]
)
def test_schemas_are_valid_draft_2020_12(document: dict[str, Any]) -> None:
    assert jsonschema_rs.meta.is_valid(document)


@needs_validator
@pytest.mark.parametrize("struct", STRUCTS, ids=lambda t: t.__name__)
@settings(max_examples=15)
@given(data=st.data())
def test_encoded_instances_validate_against_their_schema(
    struct: type[msgspec.Struct], data: st.DataObject
) -> None:
    instance = msgspec.json.decode(msgspec.json.encode(data.draw(from_type(struct))))
    errors = [error.message for error in validator(struct.__name__).iter_errors(instance)]
    assert errors == []


@needs_validator
@settings(max_examples=50)
@given(frame=from_type(protocol.Message))
def test_frames_validate_against_the_message_union(frame: protocol.Message) -> None:
    assert validator("Message").is_valid(msgspec.json.decode(protocol.encode(frame)))


@needs_validator
@pytest.mark.parametrize(
    "body",
    [
        {"name": "a b", "config": {"command": "bash"}},
        {"name": "trailing-newline\n", "config": {"command": "bash"}},
        {"name": "ok", "config": {"command": "bash"}, "surprise": 1},
        {"name": "ok", "config": {"command": "bash", "retry": {"max_retries": 101}}},
        {"name": "ok", "config": {"command": "perl"}},
        {"name": "ok", "config": {"command": "bash", "target": {"labels": {"bad key": "v"}}}},
        {"name": "ok"},
    ],
)
def test_schema_and_decoder_refuse_the_same_bad_bodies(body: dict[str, Any]) -> None:
    assert not validator("JobCreate").is_valid(body)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, JobCreate)


def test_json_schema_of_one_type_is_standalone() -> None:
    job = schema.json_schema(Job)
    assert job["$schema"] == schema.JSON_SCHEMA_DIALECT
    assert job["$ref"] == "#/$defs/Job"
    assert {"Job", "JobConfig", "RetryPolicy", "JobStatus"} <= set(job["$defs"])


def test_json_schemas_of_chosen_types() -> None:
    schemas = schema.json_schemas([JobCreate])
    referenced = {"JobStatus", "JobConfig", "CommandKind", "RetryPolicy", "BackoffKind", "ResourceLimits"}
    notify = {"NotifyRule", "NotificationEvent"}
    assert set(schemas) == {"JobCreate", "Target", "RoutingPolicy", "ConcurrencyPolicy", *referenced, *notify}
    assert schemas["JobCreate"]["additionalProperties"] is False


def test_openapi_components_use_the_ref_template() -> None:
    schemas, components = schema.openapi_components([JobCreate, Page[Job], list[str]])
    assert schemas[0] == {"$ref": "#/components/schemas/JobCreate"}
    assert schemas[1] == {"$ref": "#/components/schemas/Page_Job_"}
    assert schemas[2] == {"type": "array", "items": {"type": "string"}}
    assert components["Page_Job_"]["properties"]["items"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Job"},
    }
    prefix = "#/components/schemas/"
    refs = _refs(components)
    assert all(ref.startswith(prefix) for ref in refs)
    assert {ref.removeprefix(prefix) for ref in refs} <= set(components)
    # The same schemas as the (validated) JSON Schema export, only referenced from another place.
    as_defs = json.loads(json.dumps(components).replace(prefix, "#/$defs/"))
    assert as_defs == schema.json_schemas([JobCreate, Page[Job]])


def test_custom_ref_template() -> None:
    schemas, _ = schema.openapi_components([Job], ref_template="#/definitions/{name}")
    assert schemas == [{"$ref": "#/definitions/Job"}]
