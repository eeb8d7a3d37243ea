"""Every endpoint of the hetuflow REST API (docs/api.md), written once for both clients.

Each method only builds a ``Call``; ``Client`` and ``AsyncClient`` inherit them all and run them. Ids
are accepted as ``UUID`` or text. List endpoints return a ``Page``: pass its ``next_cursor`` back as
``cursor`` for the next one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal, TypeVar
from uuid import UUID

import msgspec

from hetuflow_core.agent import Agent, AgentUpdate, Server
from hetuflow_core.api import Page, TaskFilter, TokenCreate, TokenInfo, TokenIssued
from hetuflow_core.client._call import Call, endpoint, path_segment, query
from hetuflow_core.enums import NotificationStatus
from hetuflow_core.flow import Flow, FlowCreate, FlowRun, FlowRunCreate, FlowUpdate
from hetuflow_core.job import Job, JobCreate, JobUpdate
from hetuflow_core.notification import AuditEntry, NotificationDelivery
from hetuflow_core.schedule import (
    Schedule,
    ScheduleCreate,
    SchedulePreview,
    SchedulePreviewRequest,
    ScheduleSlot,
    ScheduleUpdate,
)
from hetuflow_core.task import Task, TaskInstance, TaskLogPage, TaskTrigger, TriggerResult, TriggerRun

__all__ = ["Api"]

T = TypeVar("T")
Id = UUID | str

_V1: Final = "/api/v1"
_NO_BODY: Final = type(None)
_encoder = msgspec.json.Encoder()


def _get(path: str, response: type[T], **params: object) -> Call[T]:
    return Call("GET", _V1 + path, response, query(params))


def _post(path: str, response: type[T], body: object = None) -> Call[T]:
    return Call("POST", _V1 + path, response, body=None if body is None else _encoder.encode(body))


def _patch(path: str, response: type[T], body: msgspec.Struct) -> Call[T]:
    return Call("PATCH", _V1 + path, response, body=_encoder.encode(body))


def _delete(path: str) -> Call[None]:
    return Call("DELETE", _V1 + path, _NO_BODY)


def _run_at(flow_id: Id, run_id: Id, action: str = "") -> str:
    """``/flows/<id>/runs/<run id>`` or with ``/<action>``."""
    return _at("flows", flow_id, f"runs/{path_segment(run_id)}" + (f"/{action}" if action else ""))


def _at(collection: str, item: Id, action: str = "") -> str:
    """``/jobs/<id>`` or ``/jobs/<id>/<action>``."""
    return f"/{collection}/{path_segment(item)}" + (f"/{action}" if action else "")


class Api:
    """The REST API as methods; mixed into ``Client`` and ``AsyncClient``."""

    # ------------------------------------------------------------------ jobs

    @endpoint
    def create_job(self, job: JobCreate) -> Call[Job]:
        """Create a job (``POST /api/v1/jobs``)."""
        return _post("/jobs", Job, job)

    @endpoint
    def get_job(self, job_id: Id) -> Call[Job]:
        """One job by id."""
        return _get(_at("jobs", job_id), Job)

    @endpoint
    def list_jobs(
        self, *, namespace: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> Call[Page[Job]]:
        """One page of jobs, optionally of one namespace."""
        return _get("/jobs", Page[Job], namespace=namespace, cursor=cursor, limit=limit)

    @endpoint
    def update_job(self, job_id: Id, update: JobUpdate) -> Call[Job]:
        """Change the fields set in ``update`` (``PATCH``); returns the job as stored."""
        return _patch(_at("jobs", job_id), Job, update)

    @endpoint
    def delete_job(self, job_id: Id) -> Call[None]:
        """Delete a job (soft delete: its history stays readable)."""
        return _delete(_at("jobs", job_id))

    @endpoint
    def enable_job(self, job_id: Id) -> Call[Job]:
        """Let the job's schedules produce tasks again."""
        return _post(_at("jobs", job_id, "enable"), Job)

    @endpoint
    def disable_job(self, job_id: Id) -> Call[Job]:
        """Stop the job's schedules; its not yet dispatched future tasks are removed."""
        return _post(_at("jobs", job_id, "disable"), Job)

    @endpoint
    def trigger_job(
        self,
        job_id: Id,
        parameters: Mapping[str, Any] | None = None,
        *,
        scheduled_at: datetime | None = None,
        priority: int | None = None,
        count: int | None = None,
        runs: Sequence[TriggerRun] | None = None,
    ) -> Call[TriggerResult]:
        """Run the job now (or at ``scheduled_at``) with ``parameters`` as ``HETUFLOW_PARAMS``.

        ``count`` makes that many tasks alike; ``runs`` one task per entry, its fields overriding the ones
        given here. Either way every task is created in one request (at most ``MAX_TRIGGER_RUNS``).
        """
        trigger = TaskTrigger(
            parameters=dict(parameters or {}),
            scheduled_at=scheduled_at,
            priority=priority,
            count=msgspec.UNSET if count is None else count,
            runs=msgspec.UNSET if runs is None else list(runs),
        )
        return _post(_at("jobs", job_id, "trigger"), TriggerResult, trigger)

    # ------------------------------------------------------------------ schedules

    @endpoint
    def create_schedule(self, schedule: ScheduleCreate) -> Call[Schedule]:
        """Create a schedule for a job."""
        return _post("/schedules", Schedule, schedule)

    @endpoint
    def get_schedule(self, schedule_id: Id) -> Call[Schedule]:
        """One schedule by id."""
        return _get(_at("schedules", schedule_id), Schedule)

    @endpoint
    def list_schedules(
        self,
        *,
        job_id: Id | None = None,
        flow_id: Id | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[Page[Schedule]]:
        """One page of schedules, optionally of one job or one flow."""
        return _get("/schedules", Page[Schedule], job_id=job_id, flow_id=flow_id, cursor=cursor, limit=limit)

    @endpoint
    def update_schedule(self, schedule_id: Id, update: ScheduleUpdate) -> Call[Schedule]:
        """Change the fields set in ``update`` (``PATCH``)."""
        return _patch(_at("schedules", schedule_id), Schedule, update)

    @endpoint
    def delete_schedule(self, schedule_id: Id) -> Call[None]:
        """Delete a schedule."""
        return _delete(_at("schedules", schedule_id))

    @endpoint
    def enable_schedule(self, schedule_id: Id) -> Call[Schedule]:
        """Resume a disabled schedule."""
        return _post(_at("schedules", schedule_id, "enable"), Schedule)

    @endpoint
    def disable_schedule(self, schedule_id: Id) -> Call[Schedule]:
        """Pause a schedule; its not yet dispatched future tasks are removed."""
        return _post(_at("schedules", schedule_id, "disable"), Schedule)

    @endpoint
    def preview_schedule(self, request: SchedulePreviewRequest) -> Call[SchedulePreview]:
        """Next fire times of a schedule that is not stored (check an expression before saving it)."""
        return _post("/schedules/preview", SchedulePreview, request)

    @endpoint
    def next_fire_times(self, schedule_id: Id, count: int = 10) -> Call[SchedulePreview]:
        """Next ``count`` fire times of a stored schedule."""
        return _get(_at("schedules", schedule_id, "next"), SchedulePreview, count=count)

    @endpoint
    def list_schedule_slots(
        self, schedule_id: Id, *, cursor: str | None = None, limit: int | None = None
    ) -> Call[Page[ScheduleSlot]]:
        """Due slots of a schedule and what became of each (ran, skipped, missed, deduplicated)."""
        return _get(_at("schedules", schedule_id, "slots"), Page[ScheduleSlot], cursor=cursor, limit=limit)

    # ------------------------------------------------------------------ tasks and instances

    @endpoint
    def list_tasks(self, task_filter: TaskFilter | None = None) -> Call[Page[Task]]:
        """One page of tasks matching every filter given."""
        return _get("/tasks", Page[Task], **msgspec.structs.asdict(task_filter or TaskFilter()))

    @endpoint
    def get_task(self, task_id: Id) -> Call[Task]:
        """One task by id."""
        return _get(_at("tasks", task_id), Task)

    @endpoint
    def cancel_task(self, task_id: Id) -> Call[Task]:
        """Cancel a task; a running attempt is killed on its agent."""
        return _post(_at("tasks", task_id, "cancel"), Task)

    @endpoint
    def retry_task(self, task_id: Id) -> Call[Task]:
        """Run a finished task again as a new attempt."""
        return _post(_at("tasks", task_id, "retry"), Task)

    @endpoint
    def list_task_instances(
        self, task_id: Id, *, cursor: str | None = None, limit: int | None = None
    ) -> Call[Page[TaskInstance]]:
        """The attempts of a task."""
        return _get(_at("tasks", task_id, "instances"), Page[TaskInstance], cursor=cursor, limit=limit)

    @endpoint
    def get_instance(self, instance_id: Id) -> Call[TaskInstance]:
        """One attempt by id."""
        return _get(_at("instances", instance_id), TaskInstance)

    @endpoint
    def get_instance_logs(
        self, instance_id: Id, *, after_seq: int | None = None, limit: int | None = None
    ) -> Call[TaskLogPage]:
        """Log chunks of an attempt after ``after_seq``; pass the page's ``next_after_seq`` to go on."""
        return _get(_at("instances", instance_id, "logs"), TaskLogPage, after_seq=after_seq, limit=limit)

    # ------------------------------------------------------------------ agents and servers

    @endpoint
    def list_agents(self, *, cursor: str | None = None, limit: int | None = None) -> Call[Page[Agent]]:
        """One page of registered agents."""
        return _get("/agents", Page[Agent], cursor=cursor, limit=limit)

    @endpoint
    def get_agent(self, agent_id: str) -> Call[Agent]:
        """One agent by id."""
        return _get(_at("agents", agent_id), Agent)

    @endpoint
    def update_agent(self, agent_id: str, update: AgentUpdate) -> Call[Agent]:
        """Replace the agent's routing labels."""
        return _patch(_at("agents", agent_id), Agent, update)

    @endpoint
    def drain_agent(self, agent_id: str) -> Call[Agent]:
        """Let the agent finish what it runs and take no new work."""
        return _post(_at("agents", agent_id, "drain"), Agent)

    @endpoint
    def shutdown_agent(self, agent_id: str) -> Call[Agent]:
        """Tell a connected agent to drain and exit."""
        return _post(_at("agents", agent_id, "shutdown"), Agent)

    @endpoint
    def disable_agent(self, agent_id: str) -> Call[Agent]:
        """Take the agent out of dispatch."""
        return _post(_at("agents", agent_id, "disable"), Agent)

    @endpoint
    def enable_agent(self, agent_id: str) -> Call[Agent]:
        """Put a drained or disabled agent back into dispatch."""
        return _post(_at("agents", agent_id, "enable"), Agent)

    @endpoint
    def delete_agent(self, agent_id: str) -> Call[None]:
        """Forget an offline agent."""
        return _delete(_at("agents", agent_id))

    @endpoint
    def list_servers(self) -> Call[Page[Server]]:
        """The server processes sharing the database."""
        return _get("/servers", Page[Server])

    # ------------------------------------------------------------------ events and flows

    @endpoint
    def fire_event(self, name: str, payload: Mapping[str, Any] | None = None) -> Call[TriggerResult]:
        """Fire event ``name``: every enabled job listening to it runs with ``payload`` as parameters."""
        return _post(_at("events", name), TriggerResult, dict(payload or {}))

    @endpoint
    def create_flow(self, flow: FlowCreate) -> Call[Flow]:
        """Create a flow (a DAG of job steps)."""
        return _post("/flows", Flow, flow)

    @endpoint
    def get_flow(self, flow_id: Id) -> Call[Flow]:
        """One flow by id."""
        return _get(_at("flows", flow_id), Flow)

    @endpoint
    def list_flows(self, *, cursor: str | None = None, limit: int | None = None) -> Call[Page[Flow]]:
        """One page of flows."""
        return _get("/flows", Page[Flow], cursor=cursor, limit=limit)

    @endpoint
    def update_flow(self, flow_id: Id, update: FlowUpdate) -> Call[Flow]:
        """Change the fields set in ``update`` (``PATCH``); started runs keep their steps."""
        return _patch(_at("flows", flow_id), Flow, update)

    @endpoint
    def delete_flow(self, flow_id: Id) -> Call[None]:
        """Delete a flow: its live runs are cancelled, its schedules disabled (its runs stay readable)."""
        return _delete(_at("flows", flow_id))

    @endpoint
    def enable_flow(self, flow_id: Id) -> Call[Flow]:
        """Let the flow run and its schedules fire again."""
        return _post(_at("flows", flow_id, "enable"), Flow)

    @endpoint
    def disable_flow(self, flow_id: Id) -> Call[Flow]:
        """Stop the flow's schedules and refuse new runs; started runs go on."""
        return _post(_at("flows", flow_id, "disable"), Flow)

    @endpoint
    def run_flow(self, flow_id: Id, parameters: Mapping[str, Any] | None = None) -> Call[FlowRun]:
        """Start a run of a flow."""
        return _post(_at("flows", flow_id, "run"), FlowRun, FlowRunCreate(parameters=dict(parameters or {})))

    @endpoint
    def list_flow_runs(
        self,
        flow_id: Id,
        *,
        order: Literal["asc", "desc"] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[Page[FlowRun]]:
        """One page of a flow's runs, each with its steps' tasks: oldest first, or latest first with
        ``order="desc"`` (a cursor keeps the order of the page it came from)."""
        return _get(_at("flows", flow_id, "runs"), Page[FlowRun], order=order, cursor=cursor, limit=limit)

    @endpoint
    def get_flow_run(self, flow_id: Id, run_id: Id) -> Call[FlowRun]:
        """One run of a flow, with the current task of each step."""
        return _get(_run_at(flow_id, run_id), FlowRun)

    @endpoint
    def get_flow_run_by_id(self, run_id: Id) -> Call[FlowRun]:
        """One flow run by its id alone (``GET /api/v1/flow-runs/{id}``), also when its flow was deleted."""
        return _get(_at("flow-runs", run_id), FlowRun)

    @endpoint
    def cancel_flow_run(self, flow_id: Id, run_id: Id) -> Call[FlowRun]:
        """Cancel a run: pending steps skipped, running ones killed on their agents."""
        return _post(_run_at(flow_id, run_id, "cancel"), FlowRun)

    @endpoint
    def retry_flow_run(self, flow_id: Id, run_id: Id) -> Call[FlowRun]:
        """Run a failed or cancelled run again from the steps that did not succeed on."""
        return _post(_run_at(flow_id, run_id, "retry"), FlowRun)

    # ------------------------------------------------------------------ tokens and health

    @endpoint
    def create_token(self, token: TokenCreate) -> Call[TokenIssued]:
        """Issue a token; its secret is in the reply only."""
        return _post("/tokens", TokenIssued, token)

    @endpoint
    def list_tokens(self, *, cursor: str | None = None, limit: int | None = None) -> Call[Page[TokenInfo]]:
        """Issued tokens (never their secrets)."""
        return _get("/tokens", Page[TokenInfo], cursor=cursor, limit=limit)

    @endpoint
    def revoke_token(self, jti: Id) -> Call[None]:
        """Revoke a token by its id; the server refuses it from then on."""
        return _delete(_at("tokens", jti))

    # ------------------------------------------------------------------ notifications and audit

    @endpoint
    def list_deliveries(
        self,
        *,
        status: NotificationStatus | str | None = None,
        target: str | None = None,
        job_id: Id | None = None,
        task_id: Id | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[Page[NotificationDelivery]]:
        """Notifications sent (or being sent) to webhooks and email targets, newest first."""
        return _get(
            "/notifications/deliveries",
            Page[NotificationDelivery],
            status=status,
            target=target,
            job_id=job_id,
            task_id=task_id,
            cursor=cursor,
            limit=limit,
        )

    @endpoint
    def list_audit(
        self,
        *,
        target: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[Page[AuditEntry]]:
        """Changes made through the API, newest first (admin tokens only)."""
        return _get(
            "/audit", Page[AuditEntry], target=target, actor=actor, action=action, cursor=cursor, limit=limit
        )

    @endpoint
    def healthz(self) -> Call[dict[str, Any]]:
        """The server process is up (``/healthz``, no token needed)."""
        return Call("GET", "/healthz", dict[str, Any])

    @endpoint
    def readyz(self) -> Call[dict[str, Any]]:
        """The server can serve: database reachable, migrations current. 503 → ``ServerError``."""
        return Call("GET", "/readyz", dict[str, Any])
