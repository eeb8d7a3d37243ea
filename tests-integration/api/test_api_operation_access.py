"""Every REST operation refuses a missing or bad token (401) and a token of too small a scope (403).

The operations come from the API's own registry, so a new endpoint is covered without touching this file.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from apifixtures import ApiServer
from apihelpers import assert_problem

from hetuflow_core.enums import TokenScope
from hetuflow_server.endpoint.api import API_PREFIX, OPERATION_GROUPS
from hetuflow_server.endpoint.api.operation import Operation

OPERATIONS = [operation for group in OPERATION_GROUPS for operation in group.operations]


def _url(operation: Operation) -> str:
    # Any well-formed id will do: authorization is decided before the resource is looked up.
    samples = {"agent_id": "agent-1", "event_name": "evt", "jti": str(uuid.uuid4())}
    return API_PREFIX + re.sub(
        r"\{(\w+)\}", lambda match: samples.get(match.group(1), str(uuid.uuid4())), operation.path
    )


def _ids(operation: Operation) -> str:
    return f"{operation.method} {operation.path}"


def _call(
    client: httpx.Client, operation: Operation, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = b"{}" if operation.body is not None else None
    content_headers = {"content-type": "application/json"} if body is not None else {}
    return client.request(
        operation.method, _url(operation), content=body, headers={**content_headers, **(headers or {})}
    )


@pytest.fixture(scope="module")
def agent_token(api_server: ApiServer) -> str:
    return api_server.issue_token(TokenScope.AGENT, "tests-agent", agent_id="agent-1")


@pytest.fixture(scope="module")
def revoked_token(api_server: ApiServer) -> str:
    token = api_server.issue_token(TokenScope.ADMIN, "tests-revoked")
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {token}"}) as client:
        jti = next(
            info["jti"]
            for info in client.get(f"{API_PREFIX}/tokens").json()["items"]
            if info["name"] == "tests-revoked"
        )
        assert client.delete(f"{API_PREFIX}/tokens/{jti}").status_code == 204
    return token


@pytest.mark.parametrize("operation", OPERATIONS, ids=_ids)
def test_no_token_is_401(anon_client: httpx.Client, operation: Operation) -> None:
    response = _call(anon_client, operation)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("operation", OPERATIONS, ids=_ids)
def test_bad_tokens_are_401(anon_client: httpx.Client, revoked_token: str, operation: Operation) -> None:
    for authorization in ("Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer", f"Bearer {revoked_token}"):
        assert_problem(_call(anon_client, operation, {"Authorization": authorization}), 401, "unauthorized")


@pytest.mark.parametrize("operation", OPERATIONS, ids=_ids)
def test_too_small_a_scope_is_403(
    anon_client: httpx.Client, read_token: str, agent_token: str, operation: Operation
) -> None:
    # An agent token opens the agent gateway only; a read token opens every GET and the preview.
    assert_problem(
        _call(anon_client, operation, {"Authorization": f"Bearer {agent_token}"}), 403, "forbidden"
    )
    read = _call(anon_client, operation, {"Authorization": f"Bearer {read_token}"})
    if operation.scope is TokenScope.ADMIN:
        assert_problem(read, 403, "forbidden")
    else:
        assert read.status_code not in (401, 403), read.text


def test_reads_need_read_and_changes_need_admin() -> None:
    for operation in OPERATIONS:
        # Token records and the audit trail are for admins only; every other read needs read.
        if operation.method == "GET" and operation.tag not in ("tokens", "audit"):
            assert operation.scope is TokenScope.READ, _ids(operation)
        elif operation.operation_id != "preview_schedule":
            assert operation.scope is TokenScope.ADMIN, _ids(operation)


def test_token_check_comes_before_validation(anon_client: httpx.Client) -> None:
    response = anon_client.post(
        f"{API_PREFIX}/jobs", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(response, 401, "unauthorized")
    assert_problem(anon_client.get(f"{API_PREFIX}/jobs/not-a-uuid"), 401, "unauthorized")


def test_unknown_routes_and_methods_are_problems(admin_client: httpx.Client) -> None:
    assert_problem(admin_client.get(f"{API_PREFIX}/nothing-here"), 404, "not-found")
    response = admin_client.put(f"{API_PREFIX}/jobs")
    assert_problem(response, 405, "method-not-allowed")
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
