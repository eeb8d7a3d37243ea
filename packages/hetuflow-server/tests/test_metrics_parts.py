"""The metrics without a database: what each observation counts, bounded label values, one registry per
application, and route templates measured by the middleware on a small Starlette app."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from hetuflow_core.enums import CommandKind, ProtocolErrorCode, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.protocol import Ack, AckData, Error, ErrorData, encode
from hetuflow_core.task import Task
from hetuflow_server.metrics import MetricsMiddleware, ServerMetrics
from hetuflow_server.scheduler.generator import CycleReport
from hetuflow_server.service import ReportOutcome, ReportResult

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def metrics() -> ServerMetrics:
    return ServerMetrics(server_id=UUID(int=1), server_name="unit")


def value(m: ServerMetrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def task(status: TaskStatus) -> Task:
    return Task(
        id=uuid7(),
        job_id=uuid7(),
        schedule_id=None,
        flow_run_id=None,
        scheduled_at=NOW,
        priority=0,
        parameters={},
        config=JobConfig(command=CommandKind.BASH, script="true"),
        status=status,
        attempt=1,
        next_attempt_at=None,
        depends_on=[],
        instance_id=None,
        agent_id=None,
        error=None,
        created_at=NOW,
        updated_at=NOW,
        completed_at=None,
    )


def result(outcome: ReportOutcome, status: TaskStatus | None = None) -> ReportResult:
    return ReportResult(instance_id=uuid7(), outcome=outcome, task=task(status) if status else None)


def test_reports_count_outcomes_completions_and_lost_verdicts() -> None:
    m = metrics()
    m.reports_applied(
        [
            result(ReportOutcome.APPLIED, TaskStatus.RUNNING),
            result(ReportOutcome.APPLIED, TaskStatus.SUCCEEDED),
            result(ReportOutcome.LATE),
            None,  # a resent frame
        ],
        by_agent=True,
    )
    m.reports_applied(
        [result(ReportOutcome.APPLIED, TaskStatus.FAILED), result(ReportOutcome.DUPLICATE)], by_agent=False
    )
    assert value(m, "hetuflow_agent_reports_total", outcome="applied") == 2
    assert value(m, "hetuflow_agent_reports_total", outcome="late") == 1
    assert value(m, "hetuflow_agent_reports_total", outcome="duplicate") == 1
    assert value(m, "hetuflow_tasks_completed_total", status="succeeded") == 1
    assert value(m, "hetuflow_tasks_completed_total", status="failed") == 1
    assert value(m, "hetuflow_tasks_completed_total", status="running") == 0
    assert value(m, "hetuflow_instances_lost_total") == 1


def test_dispatches_and_generation_cycles() -> None:
    m = metrics()
    m.dispatched([0.0, 0.02, 12.0])
    assert value(m, "hetuflow_tasks_dispatched_total") == 3
    assert value(m, "hetuflow_dispatch_delay_seconds_count") == 3
    assert value(m, "hetuflow_dispatch_delay_seconds_bucket", le="0.01") == 1
    assert value(m, "hetuflow_dispatch_delay_seconds_bucket", le="30.0") == 3
    m.generation_cycle(CycleReport(schedules=2, tasks=5, missed=3, deduplicated=1, expired=1))
    m.generation_cycle(CycleReport(lost_lease=True))
    m.generation_cycle(None)
    assert value(m, "hetuflow_generated_slots_total", outcome="task") == 5
    assert value(m, "hetuflow_generated_slots_total", outcome="missed") == 3
    assert value(m, "hetuflow_generated_slots_total", outcome="deduplicated") == 1
    assert value(m, "hetuflow_schedules_expired_total") == 1
    for outcome in ("ok", "lost_lease", "error"):
        assert value(m, "hetuflow_generation_cycles_total", result=outcome) == 1


def test_label_values_stay_bounded() -> None:
    m = metrics()
    m.http_request("BREW", "/coffee", 418, 0.1)
    m.protocol_error("no-such-code")
    m.protocol_error("malformed")
    assert value(m, "hetuflow_http_requests_total", method="other", route="/coffee", status="418") == 1
    assert value(m, "hetuflow_protocol_errors_total", code="other") == 1
    assert value(m, "hetuflow_protocol_errors_total", code="malformed") == 1


def test_each_application_counts_in_its_own_registry() -> None:
    first, second = metrics(), metrics()
    first.dispatched([0.0])
    assert value(first, "hetuflow_tasks_dispatched_total") == 1
    assert value(second, "hetuflow_tasks_dispatched_total") == 0
    body, content_type = first.exposition(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"hetuflow_tasks_dispatched_total 1.0" in body
    body, content_type = first.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


async def _job(request: Request) -> Response:
    return PlainTextResponse(str(request.path_params["job_id"]))


async def _boom(request: Request) -> Response:
    raise RuntimeError("unexpected")


@pytest.fixture
def measured() -> tuple[ServerMetrics, Starlette]:
    m = metrics()
    api = [Route("/jobs/{job_id:uuid}", _job), Route("/boom", _boom)]
    app = Starlette(
        routes=[Mount("/api/v1", routes=api)], middleware=[Middleware(MetricsMiddleware, metrics=m)]
    )
    return m, app


async def test_routes_are_labelled_by_template(measured: tuple[ServerMetrics, Starlette]) -> None:
    m, app = measured
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as client:
        for _ in range(2):
            assert (await client.get(f"/api/v1/jobs/{uuid7()}")).status_code == 200
        assert (await client.get("/api/v1/nothing")).status_code == 404
        assert (await client.get("/elsewhere/1")).status_code == 404
        assert (await client.post(f"/api/v1/jobs/{uuid7()}")).status_code == 405
        assert (await client.get("/api/v1/boom")).status_code == 500
    requests = "hetuflow_http_requests_total"
    assert value(m, requests, method="GET", route="/api/v1/jobs/{job_id}", status="200") == 2
    assert value(m, requests, method="GET", route="/api/v1/{path}", status="404") == 1
    assert value(m, requests, method="GET", route="unmatched", status="404") == 1
    assert value(m, requests, method="POST", route="/api/v1/jobs/{job_id}", status="405") == 1
    assert value(m, requests, method="GET", route="/api/v1/boom", status="500") == 1
    duration = "hetuflow_http_request_duration_seconds_count"
    assert value(m, duration, method="GET", route="/api/v1/jobs/{job_id}") == 2
    text = m.exposition(None)[0].decode()
    assert "/elsewhere" not in text


async def test_error_frames_and_closes_are_read_from_the_wire() -> None:
    m = metrics()
    error = encode(Error(data=ErrorData(code=ProtocolErrorCode.INVALID, message="refused")))
    frames: list[Message] = [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": error.decode()},
        {"type": "websocket.send", "bytes": error},
        {"type": "websocket.send", "text": encode(Ack(data=AckData(ack_id="m1"))).decode()},
        {"type": "websocket.close", "code": 1008, "reason": "too many bad frames"},
    ]
    sent: list[Message] = []

    async def gateway(scope: Scope, receive: Receive, send: Send) -> None:
        for frame in frames:
            await send(frame)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await MetricsMiddleware(gateway, metrics=m)({"type": "websocket", "path": "/ws"}, receive, send)
    assert sent == frames  # passed on untouched
    # The real encoder writes the tag first: both error frames are seen, the ack is not.
    assert value(m, "hetuflow_protocol_errors_total", code="invalid") == 2
    assert value(m, "hetuflow_agent_socket_closes_total", code="1008") == 1


def test_collections_of_the_garbage_collector_are_timed_while_watched() -> None:
    m = metrics()
    m.watch_gc_pauses()
    m.watch_gc_pauses()  # idempotent: one callback, each collection counted once
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        m.unwatch_gc_pauses()
    assert value(m, "hetuflow_gc_pause_seconds_count", generation="0") >= 1
    assert value(m, "hetuflow_gc_pause_seconds_count", generation="2") >= 1
    full = value(m, "hetuflow_gc_pause_seconds_count", generation="2")
    gc.collect(2)  # no longer watched
    assert value(m, "hetuflow_gc_pause_seconds_count", generation="2") == full
    assert value(m, "hetuflow_gc_pause_seconds_sum", generation="2") > 0
