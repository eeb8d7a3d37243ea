"""``/api/v1/flows``: DAGs of job steps — create, change, enable, disable, delete — and their runs: start,
read, cancel, retry."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.flow import Flow, FlowCreate, FlowRun, FlowRunCreate, FlowUpdate
from hetuflow_server.endpoint.api.operation import API_PREFIX, Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery

__all__ = ["operations"]

operations = Operations("flows", "DAGs of job steps run together")


class FlowRunListQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/flows/{flow_id}/runs``."""

    order: Annotated[
        Literal["asc", "desc"],
        msgspec.Meta(description="asc: oldest run first; desc: latest first (a history)"),
    ] = "asc"


def _location(flow: Flow) -> str:
    return f"{API_PREFIX}/flows/{flow.id}"


def _run_location(run: FlowRun) -> str:
    return f"{API_PREFIX}/flows/{run.flow_id}/runs/{run.id}"


@operations.get("/flows", summary="List flows")
async def list_flows(ctx: Context, query: PageQuery) -> Page[Flow]:
    """Flows in creation order."""
    return await ctx.services.flows.list(cursor=query.cursor, limit=query.limit)


@operations.post("/flows", summary="Create a flow", status=201, location=_location, extra_errors=(409,))
async def create_flow(ctx: Context, body: FlowCreate) -> Flow:
    """Store a flow: step names unique, ``depends_on`` naming other steps without a cycle, every job existing,
    a ``trigger_rule`` other than ``all_success`` only on a step with dependencies (422 naming the step
    otherwise); flow names are unique (409)."""
    return await ctx.services.flows.create(body)


@operations.get("/flows/{flow_id}", summary="Get a flow")
async def get_flow(ctx: Context, flow_id: UUID) -> Flow:
    """One flow by id."""
    return await ctx.services.flows.get(flow_id)


@operations.patch("/flows/{flow_id}", summary="Change a flow", extra_errors=(409,))
async def update_flow(ctx: Context, flow_id: UUID, body: FlowUpdate) -> Flow:
    """Change the fields given; ``steps`` replace the whole DAG and are validated as on creation (422 naming
    the step). Runs already started keep the steps they started with. A taken name is 409."""
    return await ctx.services.flows.update(flow_id, body)


@operations.delete("/flows/{flow_id}", summary="Delete a flow")
async def delete_flow(ctx: Context, flow_id: UUID) -> None:
    """Delete the flow: its live runs are cancelled (their running steps killed) and its schedules disabled;
    its name is free again."""
    await ctx.services.flows.delete(flow_id, by=ctx.actor)


@operations.post("/flows/{flow_id}/enable", summary="Enable a flow")
async def enable_flow(ctx: Context, flow_id: UUID) -> Flow:
    """Let the flow run and its schedules fire again (no change when already enabled)."""
    return await ctx.services.flows.enable(flow_id)


@operations.post("/flows/{flow_id}/disable", summary="Disable a flow")
async def disable_flow(ctx: Context, flow_id: UUID) -> Flow:
    """Silence the flow's schedules and refuse new runs; runs already started go on."""
    return await ctx.services.flows.disable(flow_id)


@operations.post(
    "/flows/{flow_id}/run",
    summary="Run a flow",
    status=201,
    body_optional=True,
    location=_run_location,
    extra_errors=(409,),
)
async def run_flow(ctx: Context, flow_id: UUID, body: FlowRunCreate) -> FlowRun:
    """Start a run: one task per step, each waiting for the steps it depends on. ``parameters`` reach every
    step (a step's own parameters win). The body may be omitted. A disabled flow cannot run (409)."""
    return await ctx.services.flows.run(flow_id, body.parameters, by=ctx.actor)


@operations.get("/flows/{flow_id}/runs", summary="List runs of a flow")
async def list_flow_runs(ctx: Context, flow_id: UUID, query: FlowRunListQuery) -> Page[FlowRun]:
    """Runs of the flow, oldest first (``order=desc``: latest first), each with the current task of every
    step."""
    return await ctx.services.flows.list_runs(
        flow_id, cursor=query.cursor, limit=query.limit, newest_first=query.order == "desc"
    )


@operations.get(
    "/flows/{flow_id}/runs/{run_id}", summary="Get a run of a flow", resources={"run_id": "flow run"}
)
async def get_flow_run(ctx: Context, flow_id: UUID, run_id: UUID) -> FlowRun:
    """One run of the flow by id, with the current task of each step (its id, status, agent and error)."""
    return await ctx.services.flows.get_run(run_id, flow_id=flow_id)


@operations.get("/flow-runs/{run_id}", summary="Get a flow run by id", resources={"run_id": "flow run"})
async def get_flow_run_by_id(ctx: Context, run_id: UUID) -> FlowRun:
    """One run by its id alone, whichever flow it belongs to (its ``flow_id`` names the flow, which may have
    been deleted since): what a task's ``flow_run_id`` leads to. The same answer as the run under its flow."""
    return await ctx.services.flows.get_run(run_id)


@operations.post(
    "/flows/{flow_id}/runs/{run_id}/cancel",
    summary="Cancel a run of a flow",
    resources={"run_id": "flow run"},
    extra_errors=(409,),
)
async def cancel_flow_run(ctx: Context, flow_id: UUID, run_id: UUID) -> FlowRun:
    """Skip the run's pending steps, cancel its running ones (their processes are killed on their agents)
    and end the run ``cancelled``. A run that already ended cannot be cancelled (409)."""
    return await ctx.services.flows.cancel_run(flow_id, run_id, by=ctx.actor)


@operations.post(
    "/flows/{flow_id}/runs/{run_id}/retry",
    summary="Retry a run of a flow",
    resources={"run_id": "flow run"},
    extra_errors=(409,),
)
async def retry_flow_run(ctx: Context, flow_id: UUID, run_id: UUID) -> FlowRun:
    """Run a failed or cancelled run again from the steps that did not succeed on: those steps, and every
    step after one of them, get new tasks (with their jobs' current config); the steps that succeeded are
    kept. The run goes on under the same id. Other states, or a step whose job was deleted, are 409."""
    return await ctx.services.flows.retry_run(flow_id, run_id, by=ctx.actor)
