"""Unit tests of the OpenAPI document: it is derived from the declared operations and says what they do."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from hetuflow_server.endpoint.api import API_PREFIX, EVENT_STREAMS, OPERATION_GROUPS, openapi_document, routes
from hetuflow_server.endpoint.api.log_stream import LOG_STREAM_PATH
from hetuflow_server.endpoint.api.operation import Operation

DOCUMENT: dict[str, Any] = json.loads(openapi_document())
OPERATIONS = [operation for group in OPERATION_GROUPS for operation in group.operations]


def entry(operation: Operation) -> dict[str, Any]:
    result: dict[str, Any] = DOCUMENT["paths"][API_PREFIX + operation.path][operation.method.lower()]
    return result


def resolve(ref: dict[str, Any]) -> dict[str, Any]:
    name = ref["$ref"].removeprefix("#/components/schemas/")
    schema: dict[str, Any] = DOCUMENT["components"]["schemas"][name]
    return schema


def test_document_header() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["info"]["title"] == "hetuflow"
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWE",
        "description": DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    assert {tag["name"] for tag in DOCUMENT["tags"]} == {group.tag for group in OPERATION_GROUPS}


def test_every_operation_is_documented_once_and_nothing_else() -> None:
    documented = {(path, method.upper()) for path, item in DOCUMENT["paths"].items() for method in item}
    declared = {(API_PREFIX + operation.path, operation.method) for operation in OPERATIONS}
    streams = {(API_PREFIX + stream.path, "GET") for stream in EVENT_STREAMS}
    assert documented == declared | streams
    assert len(declared) == len(OPERATIONS)
    assert not declared & streams
    ids = [entry(operation)["operationId"] for operation in OPERATIONS]
    ids += [DOCUMENT["paths"][API_PREFIX + stream.path]["get"]["operationId"] for stream in EVENT_STREAMS]
    assert len(ids) == len(set(ids))


def test_log_stream_is_documented_as_served() -> None:
    # A handler of its own serves it (mounted with the API), at the path the document names.
    [stream] = EVENT_STREAMS
    assert LOG_STREAM_PATH.replace("{instance_id:uuid}", "{instance_id}") == API_PREFIX + stream.path
    item = DOCUMENT["paths"][API_PREFIX + stream.path]["get"]
    assert item["operationId"] == "stream_instance_logs"
    assert item["tags"] == ["instances"]
    assert "`read`" in item["description"]
    responses = item["responses"]
    # One schema per event (OpenAPI 3.1 has no item schema): `log` carries a TaskLogEntry, `end` the status.
    [media] = responses["200"]["content"].items()
    assert media[0] == "text/event-stream"
    events = {event["properties"]["event"]["const"]: event for event in media[1]["schema"]["oneOf"]}
    assert sorted(events) == ["end", "log"]
    assert events["log"]["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/TaskLogEntry"
    }
    end_data = resolve(events["end"]["properties"]["data"]["contentSchema"])
    assert set(end_data["required"]) == {"instance_id", "status"}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert sorted(responses) == ["200", "401", "403", "404", "422", "503"]
    assert all(responses[status]["content"] == problem for status in responses if status != "200")
    params = {param["name"]: param for param in item["parameters"]}
    assert params["instance_id"]["in"] == "path"
    assert params["instance_id"]["schema"] == {"type": "string", "format": "uuid"}
    assert params["after_seq"]["in"] == "query"
    assert params["after_seq"]["required"] is False
    assert params["after_seq"]["schema"]["minimum"] == 0
    assert "LogStreamQuery" not in DOCUMENT["components"]["schemas"]


def test_every_route_path_has_its_operations() -> None:
    route_paths = {getattr(route, "path", None) for route in routes()}
    assert route_paths == {operation.path for operation in OPERATIONS}


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method} {op.path}")
def test_operation_entry(operation: Operation) -> None:
    item = entry(operation)
    responses = item["responses"]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for status in ("401", "403", "422", "503"):
        assert responses[status]["content"] == problem
    assert f"`{operation.scope}`" in item["description"]
    path_names = re.findall(r"\{(\w+)\}", operation.path)
    path_params = [param for param in item["parameters"] if param["in"] == "path"]
    assert [param["name"] for param in path_params] == path_names
    assert all(param["required"] and param["schema"] for param in path_params)
    if path_names:
        assert responses["404"]["content"] == problem
    if operation.body is not None:
        assert set(item["requestBody"]["content"]) == {"application/json"}
        assert item["requestBody"]["required"] is not operation.body_optional
        for status in ("400", "413", "415"):
            assert status in responses
    else:
        assert "requestBody" not in item
    success = [status for status in responses if status.startswith("2")]
    assert success == [str(operation.status)]
    if operation.status == 204:
        assert "content" not in responses["204"]
    else:
        assert set(responses[success[0]]["content"]) == {"application/json"}
    if operation.location is not None:
        assert "Location" in responses[success[0]]["headers"]


def test_query_parameters_are_typed() -> None:
    tasks = DOCUMENT["paths"]["/api/v1/tasks"]["get"]["parameters"]
    by_name = {param["name"]: param for param in tasks}
    assert set(by_name) == {
        "cursor",
        "limit",
        "status",
        "job_id",
        "schedule_id",
        "flow_run_id",
        "agent_id",
        "scheduled_after",
        "scheduled_before",
        "order",
    }
    assert sorted(by_name["order"]["schema"]["enum"]) == ["asc", "desc"]
    assert by_name["status"]["schema"]["type"] == "array"
    assert by_name["status"]["explode"] is True
    assert by_name["status"]["schema"]["items"] == {"$ref": "#/components/schemas/TaskStatus"}
    assert by_name["limit"]["schema"]["minimum"] == 1
    assert by_name["limit"]["schema"]["maximum"] == 1000
    assert by_name["job_id"]["schema"] == {"type": "string", "format": "uuid"}
    assert by_name["scheduled_after"]["schema"]["format"] == "date-time"
    assert all(not param["required"] for param in tasks)
    # Absent, never null: no query parameter schema admits null.
    assert "null" not in json.dumps([param["schema"] for param in tasks])


def test_problem_and_page_schemas() -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    page = DOCUMENT["components"]["schemas"]["Page_Job_"]
    assert page["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Job"}
    job_create = resolve(
        entry(next(op for op in OPERATIONS if op.operation_id == "create_job"))["requestBody"]["content"][
            "application/json"
        ]["schema"]
    )
    assert job_create["additionalProperties"] is False
    preview = DOCUMENT["components"]["schemas"]["SchedulePreviewRequest"]
    assert "from" in preview["properties"]
