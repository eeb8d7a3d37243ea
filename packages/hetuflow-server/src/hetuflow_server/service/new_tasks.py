"""New tasks: `new_task`, the one place a task to insert is built, and broadcast routing of new tasks.

Whatever creates tasks (a trigger, an event, a flow run, a retry, the generator, the daemon supervisor) builds
them with `new_task` and, inside its own transaction, passes them through `fan_out` (or `copies`): a task of a
``broadcast`` job that is not pinned yet becomes one copy per agent **online** at that moment that matches it
(required labels ⊆ agent labels, command among its capabilities), each pinned to its agent through
``config.target.agent_id``. The first copy keeps the task's id. When no agent matches, the task stays one
unpinned task that runs on the first matching agent to appear, so a requested run is never dropped. Agents
that connect later get no copy of a task already created; daemon schedules of broadcast jobs are kept
running on every matching agent by the daemon supervisor instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import RoutingPolicy, TriggerRule
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.types import Parameters
from hetuflow_server.infra import bmc, db

__all__ = ["copies", "fan_out", "is_broadcast", "matching_agents", "new_task", "pinned", "spread"]


def new_task(
    job_id: UUID,
    config: JobConfig,
    *,
    origin: bmc.TaskOrigin,
    scheduled_at: datetime,
    parameters: Parameters,
    priority: int | None = None,
    schedule_id: UUID | None = None,
    flow_run_id: UUID | None = None,
    flow_step: str | None = None,
    retry_of: UUID | None = None,
    depends_on: Sequence[UUID] = (),
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS,
) -> bmc.NewTask:
    """A task of ``job_id`` with a fresh id, running ``config`` (the job's config as of now: each task keeps
    its own snapshot), at the config's priority unless ``priority`` is given."""
    return bmc.NewTask(
        id=uuid7(),
        job_id=job_id,
        origin=origin,
        scheduled_at=scheduled_at,
        config=config,
        priority=config.priority if priority is None else priority,
        parameters=parameters,
        schedule_id=schedule_id,
        flow_run_id=flow_run_id,
        flow_step=flow_step,
        retry_of=retry_of,
        depends_on=list(depends_on),
        trigger_rule=trigger_rule,
    )


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
    return spread(task, await matching_agents(conn, task.config))


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
            agents_of[key] = await matching_agents(conn, task.config)
        result.extend(spread(task, agents_of[key]))
    return result


async def matching_agents(conn: db.Connection, config: JobConfig) -> list[str]:
    """The online agents a broadcast of ``config`` goes to, by id."""
    return await bmc.AgentBmc.matching_online(conn, labels=config.target.labels, command=config.command.value)


def spread(task: bmc.NewTask, agents: Sequence[str]) -> list[bmc.NewTask]:
    """One copy of ``task`` pinned to each of ``agents`` (the first keeps its id); ``[task]`` for none."""
    return [
        msgspec.structs.replace(
            task, id=task.id if index == 0 else uuid7(), config=pinned(task.config, agent)
        )
        for index, agent in enumerate(agents)
    ] or [task]
