"""The fleet and access: ``agents`` (list, drain, shutdown, enable, disable) and ``tokens`` (list, create,
revoke)."""

from __future__ import annotations

from collections.abc import Callable

import click

from hetuflow_core.agent import Agent
from hetuflow_core.api import TokenCreate
from hetuflow_core.cli._context import Context
from hetuflow_core.cli._output import PAGE_LIMIT, Column, all_pages, output_option, show_list
from hetuflow_core.client import Client
from hetuflow_core.enums import TokenScope

__all__ = ["commands"]

AGENT_COLUMNS = (
    Column("ID", lambda agent: agent.id),
    Column("STATUS", lambda agent: agent.status),
    Column("LABELS", lambda agent: ",".join(f"{k}={v}" for k, v in sorted(agent.labels.items())) or None),
    Column("RUNNING", lambda agent: agent.metrics.running if agent.metrics else None),
    Column("CAPACITY", lambda agent: agent.capabilities.capacity),
    Column("LAST HEARTBEAT", lambda agent: agent.last_heartbeat_at),
)
TOKEN_COLUMNS = (
    Column("JTI", lambda token: token.jti),
    Column("NAME", lambda token: token.name),
    Column("SCOPE", lambda token: token.scope),
    Column("SUBJECT", lambda token: token.subject),
    Column("EXPIRES", lambda token: token.expires_at),
    Column("STATE", lambda token: "revoked" if token.revoked_at else "active"),
)


@click.group()
def agents() -> None:
    """List agents; drain, shut down, disable or enable one."""


@agents.command("ls")
@output_option
@click.pass_obj
def agents_ls(context: Context, output: str) -> None:
    """List registered agents."""
    client = context.client
    items = all_pages(lambda cursor: client.list_agents(cursor=cursor, limit=PAGE_LIMIT))
    show_list(context, list(items), AGENT_COLUMNS, output)


def _agent_action(name: str, summary: str, act: Callable[[Client, str], Agent]) -> click.Command:
    @click.command(name, help=summary)
    @click.argument("agent_id")
    @click.pass_obj
    def action(context: Context, agent_id: str) -> None:
        agent = act(context.client, agent_id)
        context.err.print(f"agent {agent.id}: {agent.status}", markup=False)

    return action


agents.add_command(
    _agent_action(
        "drain", "Let the agent finish what it runs and take no new work.", lambda c, i: c.drain_agent(i)
    )
)
agents.add_command(
    _agent_action("shutdown", "Tell a connected agent to drain and exit.", lambda c, i: c.shutdown_agent(i))
)
agents.add_command(
    _agent_action("disable", "Take the agent out of dispatch.", lambda c, i: c.disable_agent(i))
)
agents.add_command(
    _agent_action(
        "enable", "Put a drained or disabled agent back into dispatch.", lambda c, i: c.enable_agent(i)
    )
)


@click.group()
def tokens() -> None:
    """List, create and revoke API tokens (admin)."""


@tokens.command("ls")
@output_option
@click.pass_obj
def tokens_ls(context: Context, output: str) -> None:
    """List issued tokens (never their secrets)."""
    client = context.client
    items = all_pages(lambda cursor: client.list_tokens(cursor=cursor, limit=PAGE_LIMIT))
    show_list(context, list(items), TOKEN_COLUMNS, output)


@tokens.command("create")
@click.argument("name")
@click.option(
    "--scope", type=click.Choice([scope.value for scope in TokenScope]), default="read", show_default=True
)
@click.option("--agent-id", metavar="ID", help="the agent an agent token belongs to")
@click.option("--ttl", "ttl_secs", type=click.IntRange(min=60), help="lifetime in seconds (default: a year)")
@click.pass_obj
def tokens_create(
    context: Context, name: str, scope: str, agent_id: str | None, ttl_secs: int | None
) -> None:
    """Issue a token; prints it once (it cannot be shown again)."""
    request = TokenCreate(name=name, scope=TokenScope(scope), agent_id=agent_id)
    if ttl_secs is not None:
        request.ttl_secs = ttl_secs
    issued = context.client.create_token(request)
    context.out.print(issued.token, markup=False)
    context.err.print(
        f"token {issued.info.jti} ({issued.info.scope}) expires {issued.info.expires_at}", markup=False
    )


@tokens.command("revoke")
@click.argument("jti")
@click.pass_obj
def tokens_revoke(context: Context, jti: str) -> None:
    """Revoke a token by its id."""
    context.client.revoke_token(jti)
    context.err.print(f"revoked {jti}", markup=False)


commands = (agents, tokens)
