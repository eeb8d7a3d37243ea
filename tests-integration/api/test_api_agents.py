"""REST API of agents and servers against a real server and database.

Agents register through the WebSocket gateway; here the registration is made through the agent service on the
server's own event loop (what the gateway calls), so the API's view of online, draining, disabled and offline
agents can be exercised without an agent process.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from apifixtures import ApiServer
from apihelpers import assert_problem

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind
from hetuflow_core.protocol import AgentRegisterData

AGENTS = "/api/v1/agents"


def register(server: ApiServer, agent_id: str, **labels: str) -> None:
    data = AgentRegisterData(
        agent_id=agent_id,
        name=agent_id,
        labels=labels,
        capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=2),
    )
    application = server.application
    server.run(
        application.services.agents.register(data, server_id=application.server_id, address="127.0.0.1")
    )


def disconnect(server: ApiServer, agent_id: str) -> None:
    application = server.application
    server.run(application.services.agents.disconnect(agent_id, server_id=application.server_id))


def test_list_and_get_agents(api_server: ApiServer, read_client: httpx.Client) -> None:
    for name in ("list-a", "list-b", "list-c"):
        register(api_server, name, zone="eu")
    listed = read_client.get(AGENTS, params={"limit": 1000}).json()
    ids = [agent["id"] for agent in listed["items"]]
    assert ids == sorted(ids)
    assert {"list-a", "list-b", "list-c"} <= set(ids)
    first = read_client.get(AGENTS, params={"limit": 2}).json()
    second = read_client.get(AGENTS, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [a["id"] for a in first["items"] + second["items"]] == ids[:4]
    agent = read_client.get(f"{AGENTS}/list-b").json()
    assert (agent["id"], agent["status"], agent["labels"]) == ("list-b", "online", {"zone": "eu"})
    assert agent["capabilities"]["capacity"] == 2


def test_relabel_agent(api_server: ApiServer, admin_client: httpx.Client) -> None:
    register(api_server, "relabel", zone="eu")
    response = admin_client.patch(f"{AGENTS}/relabel", json={"labels": {"gpu": "yes"}})
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == {"gpu": "yes"}
    bad = assert_problem(
        admin_client.patch(f"{AGENTS}/relabel", json={"labels": {"": "x"}}), 422, "invalid-input"
    )
    assert bad["errors"][0]["path"] == "$.labels"
    assert_problem(admin_client.patch(f"{AGENTS}/relabel", json={}), 422, "invalid-input")


def test_drain_disable_enable_delete(api_server: ApiServer, admin_client: httpx.Client) -> None:
    register(api_server, "cycle")
    url = f"{AGENTS}/cycle"
    assert admin_client.post(f"{url}/drain").json()["status"] == "draining"
    assert admin_client.post(f"{url}/drain").json()["status"] == "draining"
    assert admin_client.post(f"{url}/disable").json()["status"] == "disabled"
    assert admin_client.post(f"{url}/enable").json()["status"] in ("online", "offline")
    # Still connected: it cannot be forgotten.
    problem = assert_problem(admin_client.delete(url), 409, "conflict")
    assert "connected" in problem["detail"]
    disconnect(api_server, "cycle")
    assert admin_client.get(url).json()["status"] == "offline"
    assert_problem(admin_client.post(f"{url}/drain"), 409, "illegal-transition")
    problem = assert_problem(admin_client.post(f"{url}/shutdown"), 409, "illegal-transition")
    assert "not connected" in problem["detail"]
    assert admin_client.delete(url).status_code == 204
    assert_problem(admin_client.get(url), 404, "not-found")


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"labels": {}}),
        ("DELETE", "", None),
        ("POST", "/drain", None),
        ("POST", "/shutdown", None),
        ("POST", "/disable", None),
        ("POST", "/enable", None),
    ],
)
def test_unknown_agent_is_404(admin_client: httpx.Client, method: str, suffix: str, body: Any) -> None:
    for agent_id in ("no-such-agent", "bad%20agent", "-leading-dash"):
        response = admin_client.request(method, f"{AGENTS}/{agent_id}{suffix}", json=body)
        assert_problem(response, 404, "not-found")


def test_servers_lists_this_server(api_server: ApiServer, read_client: httpx.Client) -> None:
    page = read_client.get("/api/v1/servers").json()
    assert page["next_cursor"] is None
    [me] = [server for server in page["items"] if server["id"] == str(api_server.application.server_id)]
    assert me["status"] == "active"
    assert me["name"] == "api-test"
    assert isinstance(me["is_leader"], bool)
    assert_problem(read_client.get("/api/v1/servers", params={"limit": 0}), 422, "invalid-input")
    assert_problem(
        read_client.get("/api/v1/servers", params={"cursor": str(uuid.uuid4())}), 422, "invalid-input"
    )
