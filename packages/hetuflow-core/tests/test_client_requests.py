"""Each client method sends the request the REST API expects and decodes any valid reply unchanged.

``httpx.MockTransport`` stands in for the server, so these tests are pure: they check the method, path,
query, headers and JSON body of every endpoint, for ``Client`` and ``AsyncClient`` alike.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import msgspec
import pytest
from core_strategies import from_type
from hypothesis import given, settings
from hypothesis import strategies as st

from hetuflow_core import (
    AgentUpdate,
    CommandKind,
    FlowCreate,
    FlowStep,
    FlowUpdate,
    JobConfig,
    JobCreate,
    JobUpdate,
    ScheduleCreate,
    ScheduleKind,
    SchedulePreviewRequest,
    ScheduleUpdate,
    TaskFilter,
    TokenCreate,
    TokenScope,
    TriggerRun,
)
from hetuflow_core.client import Api, AsyncClient, Client
from hetuflow_core.client._call import Endpoint

BASE_URL = "http://hetuflow.test:8080"
TOKEN = "tok.en"
JOB = "0190d3a0-0000-7000-8000-000000000001"
SCHEDULE = "0190d3a0-0000-7000-8000-000000000002"
TASK = "0190d3a0-0000-7000-8000-000000000003"
INSTANCE = "0190d3a0-0000-7000-8000-000000000004"
FLOW = "0190d3a0-0000-7000-8000-000000000005"
JTI = "0190d3a0-0000-7000-8000-000000000006"
RUN = "0190d3a0-0000-7000-8000-000000000007"
AGENT = "worker:01"
T0 = datetime(2024, 3, 10, 1, 30, 0, 250_000, tzinfo=UTC)
T1 = datetime(2024, 3, 11, tzinfo=UTC)

NO_BODY = object()


@dataclass
class Case:
    """One client call and the request it must produce."""

    name: str
    args: tuple[Any, ...]
    http_method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    body: Any = NO_BODY

    @property
    def id(self) -> str:
        return f"{self.name}-{self.http_method}-{self.path}?{len(self.query)}"


NEW_JOB = JobCreate(name="hello", config=JobConfig(command=CommandKind.BASH, script="echo hi"))
NEW_SCHEDULE = ScheduleCreate(job_id=UUID(JOB), kind=ScheduleKind.CRON, cron_expression="*/5 * * * *")
PREVIEW = SchedulePreviewRequest(kind=ScheduleKind.CRON, cron_expression="30 1 * * *", from_=T0, count=3)
NEW_FLOW = FlowCreate(name="etl", steps=[FlowStep(name="extract", job_id=UUID(JOB))])
NEW_TOKEN = TokenCreate(name="ci", scope=TokenScope.ADMIN)
FULL_FILTER = TaskFilter(
    status=["failed", "running"],
    job_id=UUID(JOB),
    schedule_id=UUID(SCHEDULE),
    flow_run_id=UUID(RUN),
    agent_id=AGENT,
    scheduled_after=T0,
    scheduled_before=T1,
    cursor="c3",
    limit=20,
)

CASES = [
    # jobs
    Case("create_job", (NEW_JOB,), "POST", "/api/v1/jobs", body=msgspec.to_builtins(NEW_JOB)),
    Case("get_job", (UUID(JOB),), "GET", f"/api/v1/jobs/{JOB}"),
    Case("list_jobs", (), "GET", "/api/v1/jobs"),
    Case(
        "list_jobs",
        (),
        "GET",
        "/api/v1/jobs",
        kwargs={"namespace": "ops", "cursor": "c1", "limit": 50},
        query=[("namespace", "ops"), ("cursor", "c1"), ("limit", "50")],
    ),
    Case(
        "update_job",
        (JOB, JobUpdate(description="d")),
        "PATCH",
        f"/api/v1/jobs/{JOB}",
        body={"description": "d"},
    ),
    Case("delete_job", (JOB,), "DELETE", f"/api/v1/jobs/{JOB}"),
    Case("enable_job", (JOB,), "POST", f"/api/v1/jobs/{JOB}/enable"),
    Case("disable_job", (JOB,), "POST", f"/api/v1/jobs/{JOB}/disable"),
    Case(
        "trigger_job",
        (JOB,),
        "POST",
        f"/api/v1/jobs/{JOB}/trigger",
        body={"parameters": {}, "scheduled_at": None, "priority": None},
    ),
    Case(
        "trigger_job",
        (JOB, {"x": [1, "two"]}),
        "POST",
        f"/api/v1/jobs/{JOB}/trigger",
        kwargs={"scheduled_at": T0, "priority": 5},
        body={"parameters": {"x": [1, "two"]}, "scheduled_at": "2024-03-10T01:30:00.250000Z", "priority": 5},
    ),
    Case(
        "trigger_job",
        (JOB,),
        "POST",
        f"/api/v1/jobs/{JOB}/trigger",
        kwargs={"count": 3},
        body={"parameters": {}, "scheduled_at": None, "priority": None, "count": 3},
    ),
    Case(
        "trigger_job",
        (JOB, {"day": "mon"}),
        "POST",
        f"/api/v1/jobs/{JOB}/trigger",
        kwargs={
            "runs": [TriggerRun(), TriggerRun(parameters={"day": "tue"}, priority=None, scheduled_at=T0)]
        },
        body={
            "parameters": {"day": "mon"},
            "scheduled_at": None,
            "priority": None,
            "runs": [
                {},
                {
                    "parameters": {"day": "tue"},
                    "scheduled_at": "2024-03-10T01:30:00.250000Z",
                    "priority": None,
                },
            ],
        },
    ),
    # schedules
    Case(
        "create_schedule",
        (NEW_SCHEDULE,),
        "POST",
        "/api/v1/schedules",
        body=msgspec.to_builtins(NEW_SCHEDULE),
    ),
    Case("get_schedule", (SCHEDULE,), "GET", f"/api/v1/schedules/{SCHEDULE}"),
    Case(
        "list_schedules",
        (),
        "GET",
        "/api/v1/schedules",
        kwargs={"job_id": UUID(JOB), "limit": 10},
        query=[("job_id", JOB), ("limit", "10")],
    ),
    Case(
        "list_schedules",
        (),
        "GET",
        "/api/v1/schedules",
        kwargs={"flow_id": FLOW},
        query=[("flow_id", FLOW)],
    ),
    Case(
        "update_schedule",
        (SCHEDULE, ScheduleUpdate(end_time=None, timezone="Asia/Kolkata")),
        "PATCH",
        f"/api/v1/schedules/{SCHEDULE}",
        body={"timezone": "Asia/Kolkata", "end_time": None},
    ),
    Case("delete_schedule", (SCHEDULE,), "DELETE", f"/api/v1/schedules/{SCHEDULE}"),
    Case("enable_schedule", (SCHEDULE,), "POST", f"/api/v1/schedules/{SCHEDULE}/enable"),
    Case("disable_schedule", (SCHEDULE,), "POST", f"/api/v1/schedules/{SCHEDULE}/disable"),
    Case(
        "preview_schedule",
        (PREVIEW,),
        "POST",
        "/api/v1/schedules/preview",
        body={**msgspec.to_builtins(PREVIEW), "from": "2024-03-10T01:30:00.250000Z"},
    ),
    Case(
        "next_fire_times", (SCHEDULE,), "GET", f"/api/v1/schedules/{SCHEDULE}/next", query=[("count", "10")]
    ),
    Case(
        "next_fire_times", (SCHEDULE, 3), "GET", f"/api/v1/schedules/{SCHEDULE}/next", query=[("count", "3")]
    ),
    Case(
        "list_schedule_slots",
        (SCHEDULE,),
        "GET",
        f"/api/v1/schedules/{SCHEDULE}/slots",
        kwargs={"cursor": "c2"},
        query=[("cursor", "c2")],
    ),
    # tasks and instances
    Case("list_tasks", (), "GET", "/api/v1/tasks", query=[("limit", "100")]),
    Case(
        "list_tasks",
        (FULL_FILTER,),
        "GET",
        "/api/v1/tasks",
        query=[
            ("status", "failed"),
            ("status", "running"),
            ("job_id", JOB),
            ("schedule_id", SCHEDULE),
            ("flow_run_id", RUN),
            ("agent_id", AGENT),
            ("scheduled_after", "2024-03-10T01:30:00.250000Z"),
            ("scheduled_before", "2024-03-11T00:00:00Z"),
            ("cursor", "c3"),
            ("limit", "20"),
        ],
    ),
    Case("get_task", (TASK,), "GET", f"/api/v1/tasks/{TASK}"),
    Case("cancel_task", (TASK,), "POST", f"/api/v1/tasks/{TASK}/cancel"),
    Case("retry_task", (UUID(TASK),), "POST", f"/api/v1/tasks/{TASK}/retry"),
    Case("list_task_instances", (TASK,), "GET", f"/api/v1/tasks/{TASK}/instances"),
    Case("get_instance", (INSTANCE,), "GET", f"/api/v1/instances/{INSTANCE}"),
    Case("get_instance_logs", (INSTANCE,), "GET", f"/api/v1/instances/{INSTANCE}/logs"),
    Case(
        "get_instance_logs",
        (INSTANCE,),
        "GET",
        f"/api/v1/instances/{INSTANCE}/logs",
        kwargs={"after_seq": 0, "limit": 500},
        query=[("after_seq", "0"), ("limit", "500")],
    ),
    # agents and servers
    Case("list_agents", (), "GET", "/api/v1/agents", kwargs={"limit": 5}, query=[("limit", "5")]),
    Case("get_agent", (AGENT,), "GET", "/api/v1/agents/worker%3A01"),
    Case(
        "update_agent",
        (AGENT, AgentUpdate(labels={"gpu": "yes"})),
        "PATCH",
        "/api/v1/agents/worker%3A01",
        body={"labels": {"gpu": "yes"}},
    ),
    Case("drain_agent", (AGENT,), "POST", "/api/v1/agents/worker%3A01/drain"),
    Case("shutdown_agent", (AGENT,), "POST", "/api/v1/agents/worker%3A01/shutdown"),
    Case("disable_agent", (AGENT,), "POST", "/api/v1/agents/worker%3A01/disable"),
    Case("enable_agent", (AGENT,), "POST", "/api/v1/agents/worker%3A01/enable"),
    Case("delete_agent", (AGENT,), "DELETE", "/api/v1/agents/worker%3A01"),
    Case("list_servers", (), "GET", "/api/v1/servers"),
    # events and flows
    Case(
        "fire_event",
        ("deploy.done", {"sha": "abc"}),
        "POST",
        "/api/v1/events/deploy.done",
        body={"sha": "abc"},
    ),
    Case("fire_event", ("tick",), "POST", "/api/v1/events/tick", body={}),
    Case("create_flow", (NEW_FLOW,), "POST", "/api/v1/flows", body=msgspec.to_builtins(NEW_FLOW)),
    Case("get_flow", (FLOW,), "GET", f"/api/v1/flows/{FLOW}"),
    Case("list_flows", (), "GET", "/api/v1/flows", kwargs={"cursor": "c"}, query=[("cursor", "c")]),
    Case("run_flow", (FLOW,), "POST", f"/api/v1/flows/{FLOW}/run", body={"parameters": {}}),
    Case(
        "run_flow",
        (FLOW, {"day": "mon"}),
        "POST",
        f"/api/v1/flows/{FLOW}/run",
        body={"parameters": {"day": "mon"}},
    ),
    Case(
        "update_flow",
        (FLOW, FlowUpdate(description="v2")),
        "PATCH",
        f"/api/v1/flows/{FLOW}",
        body={"description": "v2"},
    ),
    Case("delete_flow", (FLOW,), "DELETE", f"/api/v1/flows/{FLOW}"),
    Case("enable_flow", (FLOW,), "POST", f"/api/v1/flows/{FLOW}/enable"),
    Case("disable_flow", (FLOW,), "POST", f"/api/v1/flows/{FLOW}/disable"),
    Case(
        "list_flow_runs",
        (FLOW,),
        "GET",
        f"/api/v1/flows/{FLOW}/runs",
        kwargs={"limit": 5},
        query=[("limit", "5")],
    ),
    Case(
        "list_flow_runs",
        (FLOW,),
        "GET",
        f"/api/v1/flows/{FLOW}/runs",
        kwargs={"order": "desc", "cursor": "c"},
        query=[("order", "desc"), ("cursor", "c")],
    ),
    Case("get_flow_run", (FLOW, RUN), "GET", f"/api/v1/flows/{FLOW}/runs/{RUN}"),
    Case("get_flow_run_by_id", (RUN,), "GET", f"/api/v1/flow-runs/{RUN}"),
    Case("cancel_flow_run", (FLOW, RUN), "POST", f"/api/v1/flows/{FLOW}/runs/{RUN}/cancel"),
    Case("retry_flow_run", (FLOW, RUN), "POST", f"/api/v1/flows/{FLOW}/runs/{RUN}/retry"),
    # tokens and health
    Case("create_token", (NEW_TOKEN,), "POST", "/api/v1/tokens", body=msgspec.to_builtins(NEW_TOKEN)),
    Case("list_tokens", (), "GET", "/api/v1/tokens"),
    Case("revoke_token", (JTI,), "DELETE", f"/api/v1/tokens/{JTI}"),
    # notifications and audit
    Case(
        "list_deliveries",
        (),
        "GET",
        "/api/v1/notifications/deliveries",
        kwargs={"status": "failed", "job_id": JOB},
        query=[("status", "failed"), ("job_id", str(JOB))],
    ),
    Case(
        "list_audit",
        (),
        "GET",
        "/api/v1/audit",
        kwargs={"target": f"/jobs/{JOB}", "actor": "ci"},
        query=[("target", f"/jobs/{JOB}"), ("actor", "ci")],
    ),
    Case("healthz", (), "GET", "/healthz"),
    Case("readyz", (), "GET", "/readyz"),
]


def response_type(case: Case) -> Any:
    built = Api.__dict__[case.name].build(None, *case.args, **case.kwargs)
    return built.response


def check_request(case: Case, request: httpx.Request) -> None:
    assert request.method == case.http_method
    assert request.url.raw_path.split(b"?")[0].decode() == case.path
    assert request.url.host == "hetuflow.test"
    assert request.url.params.multi_items() == case.query
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("hetuflow-client/")
    if case.body is NO_BODY:
        assert request.content == b""
        assert "content-type" not in request.headers
    else:
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == case.body


def transport(case: Case, reply: Any, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if reply is None:
            return httpx.Response(204)
        return httpx.Response(
            200, content=msgspec.json.encode(reply), headers={"content-type": "application/json"}
        )

    return httpx.MockTransport(handle)


def test_every_endpoint_has_a_case() -> None:
    endpoints = {name for name, value in vars(Api).items() if isinstance(value, Endpoint)}
    assert endpoints == {case.name for case in CASES}
    assert all(hasattr(Client, name) and hasattr(AsyncClient, name) for name in endpoints)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@settings(max_examples=8)
@given(data=st.data())
def test_sync_client(case: Case, data: st.DataObject) -> None:
    tp = response_type(case)
    reply = None if tp is type(None) else data.draw(from_type(tp))
    seen: list[httpx.Request] = []
    with Client(BASE_URL, TOKEN, transport=transport(case, reply, seen)) as client:
        result = getattr(client, case.name)(*case.args, **case.kwargs)
    assert len(seen) == 1
    check_request(case, seen[0])
    assert result == reply


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@settings(max_examples=3)
@given(data=st.data())
def test_async_client(case: Case, data: st.DataObject) -> None:
    tp = response_type(case)
    reply = None if tp is type(None) else data.draw(from_type(tp))
    seen: list[httpx.Request] = []

    async def call() -> Any:
        async with AsyncClient(BASE_URL, TOKEN, transport=transport(case, reply, seen)) as client:
            return await getattr(client, case.name)(*case.args, **case.kwargs)

    result = asyncio.run(call())
    assert len(seen) == 1
    check_request(case, seen[0])
    assert result == reply


def test_create_body_is_the_struct_as_json() -> None:
    case = CASES[0]
    assert case.body["name"] == "hello"
    assert case.body["config"]["command"] == "bash"
    assert case.body["config"]["script"] == "echo hi"


def test_no_token_no_authorization_header_and_extra_headers_pass() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    with Client(BASE_URL, headers={"X-Trace": "t1"}, transport=httpx.MockTransport(handle)) as client:
        assert client.healthz() == {"status": "ok"}
    assert "authorization" not in seen[0].headers
    assert seen[0].headers["x-trace"] == "t1"


def test_base_url_with_a_path_prefix() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    with Client("https://example.test/hetuflow/", TOKEN, transport=httpx.MockTransport(handle)) as client:
        client.delete_job(JOB)
    assert str(seen[0].url) == f"https://example.test/hetuflow/api/v1/jobs/{JOB}"


def test_endpoint_on_the_class_is_the_descriptor_with_the_builders_doc() -> None:
    assert isinstance(Client.get_job, Endpoint)
    assert Client.get_job.__doc__ == "One job by id."
    client = Client(BASE_URL)
    assert client.get_job.__name__ == "get_job"
    assert client.get_job.__qualname__ == "Client.get_job"
    client.close()
