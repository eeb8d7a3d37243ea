"""``/api/v1/jobs``: create, read, change, delete, enable, disable and trigger jobs."""

from __future__ import annotations

from uuid import UUID

from hetuflow_core.api import Page
from hetuflow_core.job import Job, JobCreate, JobUpdate
from hetuflow_core.task import TaskTrigger, TriggerResult
from hetuflow_core.types import Namespace
from hetuflow_server.endpoint.api.operation import API_PREFIX, Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery
from hetuflow_server.endpoint.api.redaction import redacted, redacted_page

__all__ = ["operations"]

operations = Operations("jobs", "What to run: command, limits, retries, routing")


def _location(job: Job) -> str:
    return f"{API_PREFIX}/jobs/{job.id}"


class JobListQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/jobs``."""

    namespace: Namespace | None = None


@operations.get("/jobs", summary="List jobs")
async def list_jobs(ctx: Context, query: JobListQuery) -> Page[Job]:
    """Live (not deleted) jobs in creation order, optionally of one namespace."""
    return redacted_page(
        await ctx.services.jobs.list(namespace=query.namespace, cursor=query.cursor, limit=query.limit)
    )


@operations.post("/jobs", summary="Create a job", status=201, location=_location, extra_errors=(409,))
async def create_job(ctx: Context, body: JobCreate) -> Job:
    """Store a new job; its name must be unique within its namespace (409 otherwise)."""
    return redacted(await ctx.services.jobs.create(body, by=ctx.actor))


@operations.get("/jobs/{job_id}", summary="Get a job")
async def get_job(ctx: Context, job_id: UUID) -> Job:
    """One job by id."""
    return redacted(await ctx.services.jobs.get(job_id))


@operations.patch("/jobs/{job_id}", summary="Change a job", extra_errors=(409,))
async def update_job(ctx: Context, job_id: UUID, body: JobUpdate) -> Job:
    """Change the fields given; ``config`` is replaced as a whole (a secret env value sent back as ``***``
    keeps the stored one). Disabling removes planned future tasks."""
    return redacted(await ctx.services.jobs.update(job_id, body, by=ctx.actor))


@operations.delete("/jobs/{job_id}", summary="Delete a job")
async def delete_job(ctx: Context, job_id: UUID) -> None:
    """Delete the job: its schedules stop, its future tasks go and its open tasks are cancelled."""
    await ctx.services.jobs.delete(job_id, by=ctx.actor)


@operations.post("/jobs/{job_id}/enable", summary="Enable a job")
async def enable_job(ctx: Context, job_id: UUID) -> Job:
    """Let the job's schedules produce work again (no change when already enabled)."""
    return redacted(await ctx.services.jobs.enable(job_id, by=ctx.actor))


@operations.post("/jobs/{job_id}/disable", summary="Disable a job")
async def disable_job(ctx: Context, job_id: UUID) -> Job:
    """Silence the job's schedules and remove their not yet dispatched future tasks."""
    return redacted(await ctx.services.jobs.disable(job_id, by=ctx.actor))


@operations.post("/jobs/{job_id}/trigger", summary="Run a job now", status=201, body_optional=True)
async def trigger_job(ctx: Context, job_id: UUID, body: TaskTrigger) -> TriggerResult:
    """Create one task of the job, due now or at ``scheduled_at``, with ``parameters`` as ``HETUFLOW_PARAMS``.

    The body may be omitted (no parameters, due now). Disabled jobs can be triggered too.
    """
    return await ctx.services.jobs.trigger(job_id, body, by=ctx.actor)
