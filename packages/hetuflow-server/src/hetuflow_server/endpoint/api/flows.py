"""``/api/v1/flows``: DAGs of job steps and their runs."""

from __future__ import annotations

from uuid import UUID

from hetuflow_core.api import Page
from hetuflow_core.flow import Flow, FlowCreate, FlowRun, FlowRunCreate
from hetuflow_server import errors
from hetuflow_server.endpoint.api.operation import API_PREFIX, Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery

__all__ = ["operations"]

operations = Operations("flows", "DAGs of job steps run together")


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
    """Store a flow: step names unique, ``depends_on`` naming other steps without a cycle, every job existing
    (422 naming the step otherwise); flow names are unique (409)."""
    return await ctx.services.flows.create(body)


@operations.get("/flows/{flow_id}", summary="Get a flow")
async def get_flow(ctx: Context, flow_id: UUID) -> Flow:
    """One flow by id."""
    return await ctx.services.flows.get(flow_id)


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
async def list_flow_runs(ctx: Context, flow_id: UUID, query: PageQuery) -> Page[FlowRun]:
    """Runs of the flow, oldest first."""
    return await ctx.services.flows.list_runs(flow_id, cursor=query.cursor, limit=query.limit)


@operations.get(
    "/flows/{flow_id}/runs/{run_id}", summary="Get a run of a flow", resources={"run_id": "flow run"}
)
async def get_flow_run(ctx: Context, flow_id: UUID, run_id: UUID) -> FlowRun:
    """One run of the flow by id."""
    run = await ctx.services.flows.get_run(run_id)
    if run.flow_id != flow_id:
        raise errors.NotFound("flow run", run_id)
    return run
