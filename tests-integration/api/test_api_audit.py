"""The audit trail over HTTP: every state-changing operation of the API leaves exactly one entry.

The operations come from the API's own registry, as in the access test: a new state-changing endpoint fails
here until it has a recipe below (how to call it successfully), and then fails unless its call is audited.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from apifixtures import ApiServer

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind
from hetuflow_core.protocol import AgentRegisterData
from hetuflow_server.endpoint.api import API_PREFIX, OPERATION_GROUPS
from hetuflow_server.endpoint.api.operation import Operation

OPERATIONS = [operation for group in OPERATION_GROUPS for operation in group.operations]
AUDITED = [operation for operation in OPERATIONS if operation.audited]
AUDIT = f"{API_PREFIX}/audit"
SECRET = "hunter2-never-in-the-trail"


class Call:
    """What a recipe gives back: the response of the audited call and the target its entry must name."""

    def __init__(self, response: httpx.Response, target: str) -> None:
        self.response = response
        self.target = target


Recipe = Callable[[ApiServer, httpx.Client], Call]


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _job(client: httpx.Client) -> str:
    body = {
        "name": f"audited-{uuid.uuid4().hex[:8]}",
        "config": {"command": "bash", "script": "true", "env": {"PASSWORD": SECRET}},
    }
    return str(_created(client.post(f"{API_PREFIX}/jobs", json=body))["id"])


def _schedule(client: httpx.Client) -> str:
    body = {"job_id": _job(client), "kind": "cron", "cron_expression": "0 3 * * *"}
    return str(_created(client.post(f"{API_PREFIX}/schedules", json=body))["id"])


def _task(client: httpx.Client, *, cancelled: bool = False) -> str:
    job_id = _job(client)
    task_id = str(_created(client.post(f"{API_PREFIX}/jobs/{job_id}/trigger"))["task_ids"][0])
    if cancelled:
        assert client.post(f"{API_PREFIX}/tasks/{task_id}/cancel").status_code == 200
    return task_id


def _agent(server: ApiServer, *, connected: bool = True) -> str:
    agent_id = f"audited-{uuid.uuid4().hex[:8]}"
    data = AgentRegisterData(
        agent_id=agent_id,
        name=agent_id,
        labels={},
        capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=1),
    )
    services, server_id = server.application.services, server.application.server_id
    server.run(services.agents.register(data, server_id=server_id, address="127.0.0.1"))
    if not connected:
        server.run(services.agents.disconnect(agent_id, server_id=server_id))
    return agent_id


def _flow(client: httpx.Client) -> str:
    body = {"name": f"audited-{uuid.uuid4().hex[:8]}", "steps": [{"name": "a", "job_id": _job(client)}]}
    return str(_created(client.post(f"{API_PREFIX}/flows", json=body))["id"])


def _token(client: httpx.Client) -> str:
    body = {"name": f"audited-{uuid.uuid4().hex[:8]}", "scope": "read"}
    return str(_created(client.post(f"{API_PREFIX}/tokens", json=body))["info"]["jti"])


def _on(path: str, method: str, body: Any = None) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.request(method, API_PREFIX + path, json=body)


def _create_job(server: ApiServer, client: httpx.Client) -> Call:
    body = {"name": "created", "config": {"command": "bash", "script": "true", "env": {"TOKEN": SECRET}}}
    response = client.post(f"{API_PREFIX}/jobs", json=body)
    return Call(response, f"/jobs/{response.json()['id']}")


def _on_job(method: str, suffix: str = "", body: Any = None) -> Recipe:
    def recipe(server: ApiServer, client: httpx.Client) -> Call:
        job_id = _job(client)
        return Call(_on(f"/jobs/{job_id}{suffix}", method, body)(client), f"/jobs/{job_id}")

    return recipe


def _create_schedule(server: ApiServer, client: httpx.Client) -> Call:
    body = {"job_id": _job(client), "kind": "interval", "interval_secs": 3600}
    response = client.post(f"{API_PREFIX}/schedules", json=body)
    return Call(response, f"/schedules/{response.json()['id']}")


def _on_schedule(method: str, suffix: str = "", body: Any = None) -> Recipe:
    def recipe(server: ApiServer, client: httpx.Client) -> Call:
        schedule_id = _schedule(client)
        return Call(
            _on(f"/schedules/{schedule_id}{suffix}", method, body)(client), f"/schedules/{schedule_id}"
        )

    return recipe


def _on_task(suffix: str, *, cancelled: bool) -> Recipe:
    def recipe(server: ApiServer, client: httpx.Client) -> Call:
        task_id = _task(client, cancelled=cancelled)
        return Call(_on(f"/tasks/{task_id}{suffix}", "POST")(client), f"/tasks/{task_id}")

    return recipe


def _on_agent(method: str, suffix: str = "", body: Any = None, *, connected: bool = True) -> Recipe:
    def recipe(server: ApiServer, client: httpx.Client) -> Call:
        agent_id = _agent(server, connected=connected)
        return Call(_on(f"/agents/{agent_id}{suffix}", method, body)(client), f"/agents/{agent_id}")

    return recipe


def _fire_event(server: ApiServer, client: httpx.Client) -> Call:
    return Call(client.post(f"{API_PREFIX}/events/audited", json={"api_key": SECRET}), "/events/audited")


def _create_flow(server: ApiServer, client: httpx.Client) -> Call:
    body = {"name": f"audited-{uuid.uuid4().hex[:8]}", "steps": [{"name": "a", "job_id": _job(client)}]}
    response = client.post(f"{API_PREFIX}/flows", json=body)
    return Call(response, f"/flows/{response.json()['id']}")


def _run_flow(server: ApiServer, client: httpx.Client) -> Call:
    flow_id = _flow(client)
    return Call(client.post(f"{API_PREFIX}/flows/{flow_id}/run"), f"/flows/{flow_id}")


def _on_flow(method: str, suffix: str = "", body: Any = None) -> Recipe:
    def recipe(server: ApiServer, client: httpx.Client) -> Call:
        flow_id = _flow(client)
        return Call(_on(f"/flows/{flow_id}{suffix}", method, body)(client), f"/flows/{flow_id}")

    return recipe


def _on_flow_run(suffix: str, *, cancelled: bool) -> Recipe:
    """A call on a fresh run of a fresh flow (no agent takes its step, so it stays open until cancelled)."""

    def recipe(server: ApiServer, client: httpx.Client) -> Call:
        flow_id = _flow(client)
        run_id = _created(client.post(f"{API_PREFIX}/flows/{flow_id}/run"))["id"]
        run = f"/flows/{flow_id}/runs/{run_id}"
        if cancelled:
            assert client.post(f"{API_PREFIX}{run}/cancel").is_success
        return Call(_on(f"{run}{suffix}", "POST")(client), run)

    return recipe


def _create_token(server: ApiServer, client: httpx.Client) -> Call:
    response = client.post(f"{API_PREFIX}/tokens", json={"name": "audited", "scope": "read"})
    return Call(response, f"/tokens/{response.json()['info']['jti']}")


def _revoke_token(server: ApiServer, client: httpx.Client) -> Call:
    jti = _token(client)
    return Call(client.delete(f"{API_PREFIX}/tokens/{jti}"), f"/tokens/{jti}")


RECIPES: dict[str, Recipe] = {
    "create_job": _create_job,
    "update_job": _on_job("PATCH", body={"description": "changed"}),
    "delete_job": _on_job("DELETE"),
    "enable_job": _on_job("POST", "/enable"),
    "disable_job": _on_job("POST", "/disable"),
    "trigger_job": _on_job("POST", "/trigger", {"parameters": {"password": SECRET}}),
    "create_schedule": _create_schedule,
    "update_schedule": _on_schedule("PATCH", body={"cron_expression": "0 4 * * *"}),
    "delete_schedule": _on_schedule("DELETE"),
    "enable_schedule": _on_schedule("POST", "/enable"),
    "disable_schedule": _on_schedule("POST", "/disable"),
    "cancel_task": _on_task("/cancel", cancelled=False),
    "retry_task": _on_task("/retry", cancelled=True),
    "update_agent": _on_agent("PATCH", body={"labels": {"zone": "eu"}}),
    "delete_agent": _on_agent("DELETE", connected=False),
    "drain_agent": _on_agent("POST", "/drain"),
    "shutdown_agent": _on_agent("POST", "/shutdown"),
    "disable_agent": _on_agent("POST", "/disable"),
    "enable_agent": _on_agent("POST", "/enable"),
    "fire_event": _fire_event,
    "create_flow": _create_flow,
    "run_flow": _run_flow,
    "update_flow": _on_flow("PATCH", body={"description": "changed"}),
    "delete_flow": _on_flow("DELETE"),
    "enable_flow": _on_flow("POST", "/enable"),
    "disable_flow": _on_flow("POST", "/disable"),
    "cancel_flow_run": _on_flow_run("/cancel", cancelled=False),
    "retry_flow_run": _on_flow_run("/retry", cancelled=True),
    "create_token": _create_token,
    "revoke_token": _revoke_token,
}


def _entries(client: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    response = client.get(AUDIT, params={"limit": 1000, **filters})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture(scope="module")
def admin_jti(api_server: ApiServer, admin_client: httpx.Client) -> str:
    tokens = admin_client.get(f"{API_PREFIX}/tokens", params={"limit": 1000}).json()["items"]
    return next(str(info["jti"]) for info in tokens if info["name"] == "tests-admin")


@pytest.mark.parametrize("operation", AUDITED, ids=lambda operation: operation.operation_id)
def test_every_state_changing_operation_is_audited(
    api_server: ApiServer, admin_client: httpx.Client, admin_jti: str, operation: Operation
) -> None:
    recipe = RECIPES.get(operation.operation_id)
    if recipe is None:
        pytest.fail(f"{operation.operation_id}: add a recipe that calls it, so its audit entry is checked")
    before = {entry["id"] for entry in _entries(admin_client, action=operation.operation_id)}
    call = recipe(api_server, admin_client)
    assert call.response.is_success, call.response.text
    new = [e for e in _entries(admin_client, action=operation.operation_id) if e["id"] not in before]
    assert len(new) == 1, new
    entry = new[0]
    assert entry["method"] == operation.method
    assert entry["target"] == call.target
    assert call.response.request.url.path == entry["path"]
    assert (entry["actor"], entry["actor_jti"], entry["scope"]) == ("tests-admin", admin_jti, "admin")
    assert SECRET not in json.dumps(entry)


def test_only_the_preview_is_a_change_of_nothing() -> None:
    # A POST that changes no state may opt out of auditing; any new one must be named here on purpose.
    unaudited = {op.operation_id for op in OPERATIONS if op.method != "GET" and not op.audited}
    assert unaudited == {"preview_schedule"}
    assert not any(op.audited for op in OPERATIONS if op.method == "GET")


def test_secrets_are_redacted_and_the_rest_is_summarized(admin_client: httpx.Client) -> None:
    body = {
        "name": "summarized",
        "description": "x" * 1000,
        "config": {"command": "bash", "script": "true", "env": {"DB_PASSWORD": SECRET, "MODE": "fast"}},
    }
    job_id = _created(admin_client.post(f"{API_PREFIX}/jobs", json=body))["id"]
    (entry,) = _entries(admin_client, target=f"/jobs/{job_id}", action="create_job")
    summary = entry["summary"]
    assert summary["name"] == "summarized"
    assert summary["config"]["env"] == {"DB_PASSWORD": "[redacted]", "MODE": "[redacted]"}
    assert summary["description"].startswith("x" * 256)
    assert summary["description"].endswith("[744 more characters]")
    issued = _created(admin_client.post(f"{API_PREFIX}/tokens", json={"name": "fresh", "scope": "read"}))
    assert issued["token"] not in json.dumps(_entries(admin_client, action="create_token"))


def test_a_change_that_fails_leaves_no_entry(
    admin_client: httpx.Client, pg_conn: psycopg.Connection[Any]
) -> None:
    missing = str(uuid.uuid4())
    assert admin_client.delete(f"{API_PREFIX}/jobs/{missing}").status_code == 404
    assert admin_client.post(f"{API_PREFIX}/jobs", json={"name": "no config"}).status_code == 422
    assert _entries(admin_client, target=f"/jobs/{missing}") == []
    # A statement that fails after others ran (the job was read and locked) rolls back the change and its
    # entry alike.
    taken, job_id = _job(admin_client), _job(admin_client)
    name = admin_client.get(f"{API_PREFIX}/jobs/{taken}").json()["name"]
    count = pg_conn.execute("SELECT count(*) FROM sched_audit").fetchone()
    response = admin_client.patch(f"{API_PREFIX}/jobs/{job_id}", json={"name": name, "description": "new"})
    assert response.status_code == 409, response.text
    assert pg_conn.execute("SELECT count(*) FROM sched_audit").fetchone() == count
    assert admin_client.get(f"{API_PREFIX}/jobs/{job_id}").json()["description"] == ""


def test_filters_and_paging(admin_client: httpx.Client, admin_jti: str) -> None:
    job_id = _job(admin_client)
    for _ in range(3):
        assert admin_client.post(f"{API_PREFIX}/jobs/{job_id}/disable").status_code == 200
    target = f"/jobs/{job_id}"
    entries = _entries(admin_client, target=target)
    assert [entry["action"] for entry in entries] == ["disable_job"] * 3 + ["create_job"]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert len(_entries(admin_client, target=target, actor="tests-admin")) == 4
    assert len(_entries(admin_client, target=target, actor=admin_jti)) == 4
    assert _entries(admin_client, target=target, actor="someone-else") == []
    first = admin_client.get(AUDIT, params={"target": target, "limit": 3}).json()
    assert len(first["items"]) == 3
    assert first["next_cursor"]
    second = admin_client.get(AUDIT, params={"target": target, "limit": 3, "cursor": first["next_cursor"]})
    assert [e["action"] for e in second.json()["items"]] == ["create_job"]
    assert second.json()["next_cursor"] is None
    assert admin_client.get(AUDIT, params={"cursor": "garbage"}).status_code == 422
