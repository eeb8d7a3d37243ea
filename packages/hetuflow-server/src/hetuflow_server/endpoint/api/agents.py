"""``/api/v1/agents`` and ``/api/v1/servers``: the worker and coordinator processes."""

from __future__ import annotations

from hetuflow_core.agent import Agent, AgentUpdate, Server
from hetuflow_core.api import Page
from hetuflow_core.types import AgentId
from hetuflow_server.endpoint.api import paging
from hetuflow_server.endpoint.api.operation import Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery

__all__ = ["operations", "server_operations"]

operations = Operations("agents", "Worker processes: inspect, relabel, drain, shut down, disable, forget")
server_operations = Operations("servers", "Server processes sharing the database")


@operations.get("/agents", summary="List agents")
async def list_agents(ctx: Context, query: PageQuery) -> Page[Agent]:
    """Every registered agent, by id."""
    agents = await ctx.services.agents.list()
    return paging.page_of(agents, lambda agent: agent.id, query.cursor, query.limit)


@operations.get("/agents/{agent_id}", summary="Get an agent")
async def get_agent(ctx: Context, agent_id: AgentId) -> Agent:
    """One agent by id."""
    return await ctx.services.agents.get(agent_id)


@operations.patch("/agents/{agent_id}", summary="Relabel an agent")
async def update_agent(ctx: Context, agent_id: AgentId, body: AgentUpdate) -> Agent:
    """Replace the agent's routing labels; a connected agent is told."""
    return await ctx.services.agents.update_labels(agent_id, body)


@operations.delete("/agents/{agent_id}", summary="Forget an agent", extra_errors=(409,))
async def delete_agent(ctx: Context, agent_id: AgentId) -> None:
    """Delete an agent that is not connected; a connected agent cannot be deleted (409)."""
    await ctx.services.agents.delete(agent_id)


@operations.post("/agents/{agent_id}/drain", summary="Drain an agent", extra_errors=(409,))
async def drain_agent(ctx: Context, agent_id: AgentId) -> Agent:
    """online → draining: no new work, running tasks finish. Only an online agent can drain (409)."""
    return await ctx.services.agents.drain(agent_id)


@operations.post("/agents/{agent_id}/shutdown", summary="Shut an agent down", extra_errors=(409,))
async def shutdown_agent(ctx: Context, agent_id: AgentId) -> Agent:
    """The agent drains (no new work; running tasks finish or are handed back at its drain timeout) and its
    process exits with status 0. Only a connected agent can be shut down (409)."""
    return await ctx.services.agents.shutdown(agent_id)


@operations.post("/agents/{agent_id}/disable", summary="Disable an agent", extra_errors=(409,))
async def disable_agent(ctx: Context, agent_id: AgentId) -> Agent:
    """Take the agent out of dispatch until enabled; running tasks finish."""
    return await ctx.services.agents.disable(agent_id)


@operations.post("/agents/{agent_id}/enable", summary="Enable an agent")
async def enable_agent(ctx: Context, agent_id: AgentId) -> Agent:
    """disabled → online when connected, else offline (no change for an agent that is not disabled)."""
    return await ctx.services.agents.enable(agent_id)


def _server_key(server: Server) -> str:
    # The service orders servers by (started_at, id); ISO text of UTC times sorts the same way.
    return f"{server.started_at.isoformat()}|{server.id}"


@server_operations.get("/servers", summary="List servers")
async def list_servers(ctx: Context, query: PageQuery) -> Page[Server]:
    """Every server process, oldest first, with the current leader marked."""
    servers = await ctx.services.servers.list()
    return paging.page_of(servers, _server_key, query.cursor, query.limit)
