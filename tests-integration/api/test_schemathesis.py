"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis).

Every operation of ``/api/openapi.json`` gets generated requests sent over HTTP to a real server with an admin
token: valid requests (positive), invalid ones (negative), and, for operations addressing a resource, valid
requests aimed at resources that exist (so success answers are checked too, not only 404s). Whatever the
input, the server must not fail (no 5xx), must answer only statuses the document declares for the operation,
with the declared content type, and bodies that validate against the declared schema. Examples per operation
are bounded so that the whole module runs in well under a minute.

The schema is the document the server serves, built at collection time without a server (it is a pure
function of the code) so that each operation is a test of its own; ``test_served_document_is_the_same``
checks that the server serves exactly that document.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import hypothesis
import psycopg
import pytest
import schemathesis
from apifixtures import ApiServer
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind
from hetuflow_core.protocol import AgentRegisterData
from hetuflow_server.endpoint.api import OPENAPI_PATH, openapi_document

MAX_EXAMPLES = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

DOCUMENT: dict[str, Any] = json.loads(openapi_document())
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = [(path, method) for path, item in DOCUMENT["paths"].items() for method in item]
CASES = [
    pytest.param(path, method, mode, id=f"{method.upper()} {path} [{mode}]")
    for path, method in OPERATIONS
    for mode in ("positive", "negative", *(("existing",) if "{" in path else ()))
]


def test_served_document_is_the_same(anon_client: httpx.Client) -> None:
    response = anon_client.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.json() == DOCUMENT


def seed(server: ApiServer, client: httpx.Client, conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Fresh resources of every kind, as path parameters naming them."""
    suffix = uuid.uuid4().hex[:12]
    job = client.post(
        "/api/v1/jobs", json={"name": f"fuzz-{suffix}", "config": {"command": "bash", "script": "true"}}
    )
    job_id = job.json()["id"]
    schedule = client.post(
        "/api/v1/schedules", json={"job_id": job_id, "kind": "cron", "cron_expression": "@daily"}
    )
    event = {"job_id": job_id, "kind": "event", "event_name": f"fuzz-{suffix}"}
    assert client.post("/api/v1/schedules", json=event).status_code == 201
    [task_id] = client.post(f"/api/v1/jobs/{job_id}/trigger", json={"parameters": {"seed": True}}).json()[
        "task_ids"
    ]
    instance_id = str(uuid.uuid4())
    # A finished attempt: its live log tail (an event stream) sends what is stored and ends.
    conn.execute(
        "INSERT INTO sched_task_instance"
        " (id, task_id, job_id, agent_id, attempt, fire_at, status, completed_at)"
        " VALUES (%s, %s, %s, 'fuzz-agent', 1, now(), 'succeeded', now())",
        (instance_id, task_id, job_id),
    )
    conn.execute(
        "INSERT INTO sched_task_log (instance_id, stream, seq, content) VALUES (%s, 'stdout', 0, 'hi')",
        (instance_id,),
    )
    flow = client.post(
        "/api/v1/flows", json={"name": f"fuzz-{suffix}", "steps": [{"name": "only", "job_id": job_id}]}
    )
    run = client.post(f"/api/v1/flows/{flow.json()['id']}/run")
    token = client.post("/api/v1/tokens", json={"name": f"fuzz-{suffix}", "scope": "read"})
    agent_id = f"fuzz-{suffix}"
    data = AgentRegisterData(
        agent_id=agent_id,
        name=agent_id,
        capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=1),
    )
    app = server.application
    server.run(app.services.agents.register(data, server_id=app.server_id, address=None))
    return {
        "job_id": job_id,
        "schedule_id": schedule.json()["id"],
        "task_id": task_id,
        "instance_id": instance_id,
        "agent_id": agent_id,
        "flow_id": flow.json()["id"],
        "run_id": run.json()["id"],
        "jti": token.json()["info"]["jti"],
        "event_name": f"fuzz-{suffix}",
    }


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_operation_conforms_to_the_document(
    api_server: ApiServer,
    admin_client: httpx.Client,
    admin_token: str,
    pg_conn: psycopg.Connection[Any],
    path: str,
    method: str,
    mode: str,
) -> None:
    operation = SCHEMA[path][method]
    headers = {"Authorization": f"Bearer {admin_token}"}
    if mode == "existing":
        existing = seed(api_server, admin_client, pg_conn)
        names = [
            param["name"] for param in DOCUMENT["paths"][path][method]["parameters"] if param["in"] == "path"
        ]
        strategy = operation.as_strategy(path_parameters={name: existing[name] for name in names})
    else:
        strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
    statuses: list[int] = []

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        response = case.call_and_validate(base_url=api_server.url, headers=headers, checks=CHECKS)
        statuses.append(response.status_code)

    check()
    assert statuses
    if mode != "negative":
        # The admin token is always valid and sufficient: each answer is about the generated request itself.
        assert not {401, 403} & set(statuses), statuses
