"""``GET /metrics`` scraped from a real server: values move after a task runs, refusals on the agent socket
are counted, the output is valid exposition (``promtool check metrics`` when installed), and the endpoint can
be made to need a read token."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

import httpx
import msgspec
import pytest
from pipelinefixtures import AgentPool, FakeAgent, Pipeline, open_ws, wait_for
from prometheus_client.parser import text_string_to_metric_families
from serverfixtures import AppClient

from hetuflow_agent.errors import HandshakeRejected
from hetuflow_core.api import TokenCreate
from hetuflow_core.enums import TokenScope
from hetuflow_server.config import MetricsSection

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: Mapping[str, str] | None = None) -> tuple[str, Samples]:
    """The exposition text of ``url``/metrics and its samples by (name, labels)."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text, parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled counter child that does not exist yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_when_a_task_runs(pipeline: Pipeline, agents: AgentPool) -> None:
    url = pipeline.server.url
    _, before = scrape(url)
    agents.start(capacity=3)
    task_id = pipeline.run(suite=agents.suite, script="echo metrics")
    assert pipeline.wait_task(task_id)["status"] == "succeeded"
    pipeline.task(task_id)  # one GET of a templated route

    # The final report is applied (and counted) before the API shows the task succeeded.
    text, after = scrape(url)
    assert (
        value(after, "hetuflow_tasks_dispatched_total")
        >= value(before, "hetuflow_tasks_dispatched_total") + 1
    )
    assert value(after, "hetuflow_dispatch_delay_seconds_count") >= 1
    succeeded = "hetuflow_tasks_completed_total"
    assert value(after, succeeded, status="succeeded") >= value(before, succeeded, status="succeeded") + 1
    # running, then succeeded: two applied reports at least.
    applied = value(after, "hetuflow_agent_reports_total", outcome="applied")
    assert applied >= value(before, "hetuflow_agent_reports_total", outcome="applied") + 2
    assert value(after, "hetuflow_agents_connected") >= 1
    assert value(after, "hetuflow_agent_capacity_slots") >= 3
    assert value(after, "hetuflow_leader") == 1
    assert value(after, "hetuflow_dispatch_rounds_total") > 0
    assert value(after, "hetuflow_report_batches_total") > 0
    assert value(after, "hetuflow_db_pool_connections") >= 1
    assert value(after, "hetuflow_db_pool_requests_total") > 0
    # Routes are labelled by template, never by raw path.
    assert (
        value(after, "hetuflow_http_requests_total", method="POST", route="/api/v1/jobs", status="201") >= 1
    )
    task_route = {"method": "GET", "route": "/api/v1/tasks/{task_id}", "status": "200"}
    assert value(after, "hetuflow_http_requests_total", **task_route) >= 1
    assert task_id not in text
    assert value(after, "hetuflow_http_request_duration_seconds_count", method="GET", route="/readyz") >= 1
    assert ("hetuflow_server_info", frozenset()) not in after  # the info metric carries labels
    assert any(name == "hetuflow_server_info" for name, _ in after)


def test_unmatched_paths_share_one_label(pipeline: Pipeline) -> None:
    for path in ("/nowhere/1", "/nowhere/2", "/api/v1/nothing-here"):
        assert httpx.get(f"{pipeline.server.url}{path}", timeout=10).status_code == 404
    text, samples = scrape(pipeline.server.url)
    assert "/nowhere" not in text
    assert value(samples, "hetuflow_http_requests_total", method="GET", route="unmatched", status="404") >= 2
    assert (
        value(samples, "hetuflow_http_requests_total", method="GET", route="/api/v1/{path}", status="404")
        >= 1
    )


async def test_protocol_errors_and_refusals_are_counted(pipeline: Pipeline) -> None:
    _, before = scrape(pipeline.server.url)
    agent_id = "metrics-fake"
    fake = FakeAgent(await open_ws(pipeline.server, pipeline.agent_token(agent_id), agent_id), agent_id)
    try:
        await fake.register()
        await fake.send_raw("{not json")
        await fake.recv()  # the error frame
    finally:
        await fake.ws.close()
    with pytest.raises(HandshakeRejected):  # refused before the upgrade
        await open_ws(pipeline.server, "not-a-token", agent_id)

    def counted() -> Samples | None:
        samples = scrape(pipeline.server.url)[1]
        malformed = value(samples, "hetuflow_protocol_errors_total", code="malformed")
        return (
            samples if malformed > value(before, "hetuflow_protocol_errors_total", code="malformed") else None
        )

    after = wait_for(counted, what="the malformed frame to be counted")
    closes = sum(v for (name, _), v in after.items() if name == "hetuflow_agent_socket_closes_total")
    assert closes > sum(v for (name, _), v in before.items() if name == "hetuflow_agent_socket_closes_total")


def test_promtool_accepts_the_exposition(pipeline: Pipeline) -> None:
    if shutil.which("promtool") is None:
        reason = "promtool not installed (apt-get install prometheus)"
        if os.environ.get("HETUFLOW_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{reason}, and HETUFLOW_REQUIRE_PROMTOOL=1", pytrace=False)
        pytest.skip(reason)
    text, _ = scrape(pipeline.server.url)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_read_token_can_be_required(app_client: AppClient) -> None:
    application = app_client.application
    client = app_client.client
    # Open by default.
    assert (await client.get("/metrics")).status_code == 200
    # The endpoint reads the setting per request: switch it on for this application.
    application.config = msgspec.structs.replace(
        application.config, metrics=MetricsSection(require_token=True)
    )
    missing = await client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    agent = await application.tokens.issue(
        TokenCreate(name="metrics-agent", scope=TokenScope.AGENT, agent_id="metrics-agent"),
        created_by="tests",
    )
    assert (await client.get("/metrics", headers=app_client.auth(agent.token))).status_code == 403
    reader = await application.tokens.issue(
        TokenCreate(name="metrics-reader", scope=TokenScope.READ), created_by="tests"
    )
    scraped = await client.get("/metrics", headers=app_client.auth(reader.token))
    assert scraped.status_code == 200
    assert "hetuflow_db_pool_connections" in scraped.text
    openmetrics = await client.get(
        "/metrics", headers={**app_client.auth(reader.token), "Accept": "application/openmetrics-text"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
