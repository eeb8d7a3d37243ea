"""Broadcast routing: a task of a ``broadcast`` job becomes one task per matching agent, each pinned to it.

A job whose ``config.target.routing`` is ``broadcast`` runs on every agent that matches it. Whatever creates
tasks — a trigger, an event, the generator, a flow run — passes its new tasks through `fan_out` (or
`copies`) inside its own transaction: a broadcast task that is not pinned yet becomes one copy per agent that
is **online** at that moment (connected, neither draining nor disabled) and matches it (required labels ⊆
agent labels, command among the agent's capabilities). Each copy has ``config.target.agent_id`` set to its
agent, and the dispatcher gives a pinned task to that agent and to no other; while the agent is away the copy
waits for it. The first copy keeps the task's id, the others get new ones. A retry of a copy stays pinned.

Agents that connect later do not get a copy of a task already created. When no agent matches at creation, the
task stays as it is — one unpinned task that waits and runs on the first matching agent to appear — so a
requested run is never dropped without a trace. (Daemon schedules of broadcast jobs are kept running on every
matching agent by the daemon supervisor instead, see ``scheduler.daemon``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from hetuflow_core.enums import RoutingPolicy
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_server.infra import bmc, db

__all__ = ["copies", "fan_out", "is_broadcast", "pinned"]


def is_broadcast(config: JobConfig) -> bool:
    """True for a config whose tasks are fanned out: broadcast routing and no agent pinned yet."""
    return config.target.routing is RoutingPolicy.BROADCAST and config.target.agent_id is None


def pinned(config: JobConfig, agent_id: str | None) -> JobConfig:
    """``config`` pinned to ``agent_id`` (unchanged for None)."""
    if agent_id is None or config.target.agent_id == agent_id:
        return config
    return msgspec.structs.replace(config, target=msgspec.structs.replace(config.target, agent_id=agent_id))


async def copies(conn: db.Connection, task: bmc.NewTask) -> list[bmc.NewTask]:
    """The tasks ``task`` stands for: itself, or for a broadcast task one pinned copy per matching online
    agent (itself when none matches)."""
    if not is_broadcast(task.config):
        return [task]
    return _spread(task, await _matching_agents(conn, task.config))


async def fan_out(conn: db.Connection, tasks: Sequence[bmc.NewTask]) -> list[bmc.NewTask]:
    """``tasks`` with every broadcast task replaced by its `copies`, in order; the agents are looked up once
    per distinct target."""
    result: list[bmc.NewTask] = []
    agents_of: dict[tuple[tuple[tuple[str, str], ...], str], list[str]] = {}
    for task in tasks:
        if not is_broadcast(task.config):
            result.append(task)
            continue
        key = (tuple(sorted(task.config.target.labels.items())), task.config.command.value)
        if key not in agents_of:
            agents_of[key] = await _matching_agents(conn, task.config)
        result.extend(_spread(task, agents_of[key]))
    return result


async def _matching_agents(conn: db.Connection, config: JobConfig) -> list[str]:
    return await bmc.AgentBmc.matching_online(conn, labels=config.target.labels, command=config.command.value)


def _spread(task: bmc.NewTask, agents: Sequence[str]) -> list[bmc.NewTask]:
    """One copy of ``task`` pinned to each of ``agents`` (the first keeps its id); ``[task]`` for none."""
    return [
        msgspec.structs.replace(
            task, id=task.id if index == 0 else uuid7(), config=pinned(task.config, agent)
        )
        for index, agent in enumerate(agents)
    ] or [task]
