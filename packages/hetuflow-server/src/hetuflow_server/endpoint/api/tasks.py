"""``/api/v1/tasks`` and ``/api/v1/instances``: planned executions, their attempts and their logs."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

from hetuflow_core.api import Page, TaskFilter
from hetuflow_core.enums import TaskStatus
from hetuflow_core.task import Task, TaskInstance, TaskLogPage
from hetuflow_core.types import AgentId
from hetuflow_server.endpoint.api import paging
from hetuflow_server.endpoint.api.operation import API_PREFIX, Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery, Timestamp
from hetuflow_server.endpoint.api.redaction import redacted, redacted_page
from hetuflow_server.service.tasks import DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT

__all__ = ["instance_operations", "operations"]

operations = Operations("tasks", "Planned executions of jobs: filter, cancel, retry")
instance_operations = Operations("instances", "Attempts of tasks on agents, and their logs")


def _location(task: Task) -> str:
    return f"{API_PREFIX}/tasks/{task.id}"


class TaskListQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/tasks``: every filter given must match."""

    status: Annotated[
        list[TaskStatus], msgspec.Meta(max_length=8, description="Any of these states (repeat the parameter)")
    ] = []
    job_id: UUID | None = None
    schedule_id: UUID | None = None
    flow_run_id: UUID | None = None
    agent_id: AgentId | None = None
    scheduled_after: Timestamp | None = None
    scheduled_before: Timestamp | None = None
    order: Annotated[
        Literal["desc", "asc"],
        msgspec.Meta(description="desc: latest scheduled first; asc: earliest first (what runs next)"),
    ] = "desc"


class LogQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/instances/{id}/logs``."""

    after_seq: Annotated[
        int, msgspec.Meta(ge=0, le=2**62, description="Position to read after; 0 is the start of the log")
    ] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LOG_LIMIT, description="Largest number of chunks")] = (
        DEFAULT_LOG_LIMIT
    )


@operations.get("/tasks", summary="List tasks")
async def list_tasks(ctx: Context, query: TaskListQuery) -> Page[Task]:
    """Tasks matching every filter given, latest scheduled first (``order=asc``: earliest first).
    ``scheduled_after`` is inclusive and ``scheduled_before`` exclusive; ``status`` may repeat to match any of
    several states. History is ``scheduled_before=<now>``; the runs coming up are ``status=pending``,
    ``scheduled_after=<now>``, ``order=asc``."""
    filt = TaskFilter(
        status=[status.value for status in query.status],
        job_id=query.job_id,
        schedule_id=query.schedule_id,
        flow_run_id=query.flow_run_id,
        agent_id=query.agent_id,
        scheduled_after=query.scheduled_after,
        scheduled_before=query.scheduled_before,
        order=query.order,
        cursor=query.cursor,
        limit=query.limit,
    )
    return redacted_page(await ctx.services.tasks.list(filt))


@operations.get("/tasks/{task_id}", summary="Get a task")
async def get_task(ctx: Context, task_id: UUID) -> Task:
    """One task by id."""
    return redacted(await ctx.services.tasks.get(task_id))


@operations.post("/tasks/{task_id}/cancel", summary="Cancel a task", extra_errors=(409,))
async def cancel_task(ctx: Context, task_id: UUID) -> Task:
    """pending, dispatched, running or waiting_retry → cancelled; a running attempt is killed on its agent.
    A task that already ended cannot be cancelled (409)."""
    outcome = await ctx.services.tasks.cancel(task_id, by=ctx.actor)
    return redacted(outcome.task)


@operations.post(
    "/tasks/{task_id}/retry", summary="Retry a task", status=201, location=_location, extra_errors=(409,)
)
async def retry_task(ctx: Context, task_id: UUID) -> Task:
    """Create a new task running a failed, cancelled or skipped one again, with its parameters and the job's
    current config; answers the new task. Other states cannot be retried (409)."""
    return redacted(await ctx.services.tasks.retry(task_id, by=ctx.actor))


@operations.get("/tasks/{task_id}/instances", summary="Attempts of a task")
async def list_task_instances(ctx: Context, task_id: UUID, query: PageQuery) -> Page[TaskInstance]:
    """Every attempt of the task, first to last."""
    instances = await ctx.services.tasks.list_instances(task_id)
    return paging.page_of(instances, lambda instance: f"{instance.attempt:012d}", query.cursor, query.limit)


@instance_operations.get("/instances/{instance_id}", summary="Get an attempt")
async def get_instance(ctx: Context, instance_id: UUID) -> TaskInstance:
    """One attempt by id: agent, state, exit code, output tail and resource use."""
    return await ctx.services.instances.get(instance_id)


@instance_operations.get("/instances/{instance_id}/logs", summary="Logs of an attempt")
async def get_instance_logs(ctx: Context, instance_id: UUID, query: LogQuery) -> TaskLogPage:
    """Log chunks of the attempt in arrival order after position ``after_seq``; pass the page's
    ``next_after_seq`` back to continue (it stays the same while nothing new arrived)."""
    return await ctx.services.instances.logs(instance_id, after_seq=query.after_seq, limit=query.limit)
