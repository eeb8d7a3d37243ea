"""The served OpenAPI document: public, valid OpenAPI 3.1, and its schemas describe real answers.

Validation uses the OpenAPI 3.1 meta-schema and JSON Schema 2020-12 (jsonschema-rs, from schemathesis),
then checks answers of a live server against the schemas the document gives them.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from hetuflow_server.endpoint.api import OPENAPI_PATH


@pytest.fixture(scope="module")
def document(anon_client: httpx.Client) -> dict[str, Any]:
    response = anon_client.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def validator_for(document: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    """A validator of component ``name``, resolving references inside the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    errors = [error.message for error in jsonschema_rs.Draft202012Validator(OPENAPI_31).iter_errors(document)]
    assert errors == []


def test_every_component_is_a_valid_json_schema(document: dict[str, Any]) -> None:
    for name in document["components"]["schemas"]:
        validator_for(document, name)


def test_answers_match_their_schemas(document: dict[str, Any], admin_client: httpx.Client) -> None:
    created = admin_client.post(
        "/api/v1/jobs", json={"name": "schema-job", "config": {"command": "bash", "args": ["-c", "true"]}}
    )
    assert created.status_code == 201
    validator_for(document, "Job").validate(created.json())
    validator_for(document, "Page_Job_").validate(admin_client.get("/api/v1/jobs").json())
    problem = admin_client.post("/api/v1/jobs", json={"name": "schema-job"})
    validator_for(document, "Problem").validate(problem.json())
    assert problem.json()["errors"][0]["path"] == "$.config"


def test_document_needs_no_token_and_rejects_other_methods(anon_client: httpx.Client) -> None:
    assert anon_client.get(OPENAPI_PATH).status_code == 200
    response = anon_client.post(OPENAPI_PATH)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
