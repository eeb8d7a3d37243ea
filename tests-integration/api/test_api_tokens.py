"""REST API of tokens against a real server and database: issue, use, list, revoke."""

from __future__ import annotations

import uuid

import httpx
import pytest
from apifixtures import ApiServer
from apihelpers import assert_problem

TOKENS = "/api/v1/tokens"


def test_issue_use_list_revoke(api_server: ApiServer, admin_client: httpx.Client) -> None:
    response = admin_client.post(TOKENS, json={"name": "dashboard", "scope": "read", "ttl_secs": 3600})
    assert response.status_code == 201, response.text
    issued = response.json()
    info = issued["info"]
    assert response.headers["location"] == f"{TOKENS}/{info['jti']}"
    assert (info["name"], info["scope"], info["revoked_at"]) == ("dashboard", "read", None)
    with httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {issued['token']}"}
    ) as client:
        assert client.get("/api/v1/jobs").status_code == 200
        assert_problem(client.post("/api/v1/jobs", json={}), 403, "forbidden")
        assert_problem(client.get(TOKENS), 403, "forbidden")
        listed = admin_client.get(TOKENS).json()["items"]
        assert info["jti"] in [item["jti"] for item in listed]
        assert all("token" not in item for item in listed)
        assert admin_client.delete(f"{TOKENS}/{info['jti']}").status_code == 204
        assert_problem(client.get("/api/v1/jobs"), 401, "unauthorized")
    # Revoking twice is fine; the record shows when.
    assert admin_client.delete(f"{TOKENS}/{info['jti']}").status_code == 204
    revoked = [item for item in admin_client.get(TOKENS).json()["items"] if item["jti"] == info["jti"]]
    assert revoked[0]["revoked_at"] is not None
    live = admin_client.get(TOKENS, params={"include_revoked": "false"}).json()["items"]
    assert info["jti"] not in [item["jti"] for item in live]


def test_agent_tokens_name_their_agent(admin_client: httpx.Client) -> None:
    response = admin_client.post(TOKENS, json={"name": "w1", "scope": "agent", "agent_id": "worker-1"})
    assert response.status_code == 201, response.text
    assert response.json()["info"]["subject"] == "worker-1"
    assert_problem(admin_client.post(TOKENS, json={"name": "w2", "scope": "agent"}), 422, "invalid-input")
    assert_problem(
        admin_client.post(TOKENS, json={"name": "w3", "scope": "read", "agent_id": "worker-1"}),
        422,
        "invalid-input",
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"scope": "admin"}, "$.name"),
        ({"name": "x", "scope": "root"}, "$.scope"),
        ({"name": "x", "scope": "read", "ttl_secs": 1}, "$.ttl_secs"),
        ({"name": "x", "scope": "read", "secret": "s"}, "$.secret"),
    ],
)
def test_invalid_token_requests_are_422(
    admin_client: httpx.Client, body: dict[str, object], path: str
) -> None:
    problem = assert_problem(admin_client.post(TOKENS, json=body), 422, "invalid-input")
    assert problem["errors"][0]["path"] == path


def test_unknown_tokens_are_404(admin_client: httpx.Client) -> None:
    assert_problem(admin_client.delete(f"{TOKENS}/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(admin_client.delete(f"{TOKENS}/not-a-jti"), 404, "not-found")
    assert_problem(admin_client.get(TOKENS, params={"include_revoked": "perhaps"}), 422, "invalid-input")


def test_paging_tokens(admin_client: httpx.Client) -> None:
    for index in range(3):
        assert admin_client.post(TOKENS, json={"name": f"paged-{index}", "scope": "read"}).status_code == 201
    everything = [item["jti"] for item in admin_client.get(TOKENS).json()["items"]]
    walked: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = admin_client.get(TOKENS, params=params).json()
        walked.extend(item["jti"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything
