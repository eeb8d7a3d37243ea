"""Request bodies refuse bad names, labels, bounds and unknown fields; defaults fill the rest."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hetuflow_core import (
    AgentUpdate,
    BackoffKind,
    CommandKind,
    FlowCreate,
    FlowRunCreate,
    JobCreate,
    JobStatus,
    JobUpdate,
    RoutingPolicy,
    ScheduleCreate,
    SchedulePreviewRequest,
    ScheduleUpdate,
    TaskFilter,
    TaskTrigger,
    TokenCreate,
    TriggerRun,
)
from hetuflow_core.task import MAX_TRIGGER_RUNS
from hetuflow_core.types import INT32_MAX

JOB_ID = "0190d3a0-0000-7000-8000-000000000001"


def job_body(**overrides: Any) -> dict[str, Any]:
    return {"name": "nightly-report", "config": {"command": "bash", "script": "echo hi"}, **overrides}


def refused(body: Any, tp: Any) -> str:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(msgspec.json.encode(body), type=tp)
    return str(caught.value)


def test_minimal_job_gets_documented_defaults() -> None:
    job = msgspec.convert(job_body(), JobCreate)
    assert job.namespace == "default"
    assert job.status is JobStatus.ENABLED
    assert job.config.command is CommandKind.BASH
    assert job.config.retry.max_retries == 0
    assert job.config.retry.backoff is BackoffKind.EXPONENTIAL
    assert job.config.target.routing is RoutingPolicy.ANY
    assert job.config.limits.memory_mb is None
    assert job.config.priority == 0


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-leading-dash",
        ".hidden",
        "has space",
        "trailing-newline\n",
        "tab\there",
        "ünïcode",
        "x" * 129,
        "a/b",
    ],
)
def test_bad_job_names(name: str) -> None:
    assert "$.name" in refused(job_body(name=name), JobCreate)


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "9lives", "x" * 128])
def test_good_job_names(name: str) -> None:
    assert msgspec.convert(job_body(name=name), JobCreate).name == name


@pytest.mark.parametrize("namespace", ["", "Upper", "dot.ted", "-x", "x" * 65, "ns\n"])
def test_bad_namespaces(namespace: str) -> None:
    assert "$.namespace" in refused(job_body(namespace=namespace), JobCreate)


@pytest.mark.parametrize(
    "labels",
    [
        {"": "v"},
        {"bad key": "v"},
        {"k\n": "v"},
        {"k" * 64: "v"},
        {"k": "v" * 257},
        {f"k{i}": "v" for i in range(65)},
        {"k": 1},
    ],
    ids=["empty-key", "space", "newline", "long-key", "long-value", "too-many", "non-string-value"],
)
def test_bad_labels(labels: dict[str, Any]) -> None:
    body = job_body(config={"command": "bash", "target": {"labels": labels}})
    assert "$.config.target.labels" in refused(body, JobCreate)
    assert "$.labels" in refused({"labels": labels}, AgentUpdate)


def test_good_labels() -> None:
    labels = {"gpu": "yes", "region/zone": "eu-1.a", "k" * 63: ""}
    assert msgspec.convert({"labels": labels}, AgentUpdate).labels == labels


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "PATH\n", ""])
def test_bad_env_var_names(key: str) -> None:
    body = job_body(config={"command": "bash", "env": {key: "v"}})
    assert "$.config.env" in refused(body, JobCreate)


@pytest.mark.parametrize(
    ("body", "tp", "path"),
    [
        (job_body(surprise=1), JobCreate, "$"),
        (job_body(config={"command": "bash", "scrpit": "typo"}), JobCreate, "$.config"),
        (job_body(config={"command": "bash", "retry": {"retries": 3}}), JobCreate, "$.config.retry"),
        (job_body(config={"command": "bash", "limits": {"memory": 1}}), JobCreate, "$.config.limits"),
        (job_body(config={"command": "bash", "target": {"label": {}}}), JobCreate, "$.config.target"),
        ({"nmae": "x"}, JobUpdate, "$"),
        ({"job_id": JOB_ID, "kind": "cron", "cron": "* * * * *"}, ScheduleCreate, "$"),
        ({"cron": "* * * * *"}, ScheduleUpdate, "$"),
        ({"kind": "cron", "from_": "2024-01-01T00:00:00Z"}, SchedulePreviewRequest, "$"),
        ({"params": {}}, TaskTrigger, "$"),
        ({"runs": [{"params": {}}]}, TaskTrigger, "$.runs[0]"),
        ({"name": "f", "steps": [{"name": "s", "job_id": JOB_ID, "after": []}]}, FlowCreate, "$.steps[0]"),
        ({"params": {}}, FlowRunCreate, "$"),
        ({"name": "ci", "scope": "admin", "ttl": 60}, TokenCreate, "$"),
        ({"labels": {}, "name": "x"}, AgentUpdate, "$"),
        ({"state": ["failed"]}, TaskFilter, "$"),
    ],
)
def test_unknown_fields_are_refused(body: dict[str, Any], tp: type, path: str) -> None:
    message = refused(body, tp)
    assert "unknown field" in message
    assert message.endswith(f"`{path}`") or path == "$"


@pytest.mark.parametrize(
    ("body", "tp"),
    [
        (job_body(config={"command": "bash", "timeout_secs": 0}), JobCreate),
        (job_body(config={"command": "bash", "retry": {"jitter": 1.5}}), JobCreate),
        (job_body(config={"command": "bash", "limits": {"memory_mb": 0}}), JobCreate),
        (job_body(config={"command": "bash", "priority": 1001}), JobCreate),
        (job_body(config={"command": "bash", "args": ["x"] * 1025}), JobCreate),
        ({"job_id": JOB_ID, "kind": "interval", "interval_secs": 0}, ScheduleCreate),
        ({"job_id": JOB_ID, "kind": "cron", "max_count": INT32_MAX + 1}, ScheduleCreate),
        ({"job_id": JOB_ID, "kind": "cron", "timezone": ""}, ScheduleCreate),
        ({"job_id": "not-a-uuid", "kind": "cron"}, ScheduleCreate),
        ({"job_id": JOB_ID, "kind": "hourly"}, ScheduleCreate),
        ({"job_id": JOB_ID, "kind": "once", "start_time": "tomorrow"}, ScheduleCreate),
        ({"kind": "cron", "count": 1001}, SchedulePreviewRequest),
        ({"name": "f", "steps": []}, FlowCreate),
        ({"name": "ci", "scope": "root"}, TokenCreate),
        ({"name": "ci", "scope": "admin", "ttl_secs": 59}, TokenCreate),
        ({"limit": 0}, TaskFilter),
        ({"priority": -1001}, TaskTrigger),
        ({"count": 0}, TaskTrigger),
        ({"count": MAX_TRIGGER_RUNS + 1}, TaskTrigger),
        ({"count": None}, TaskTrigger),
        ({"runs": []}, TaskTrigger),
        ({"runs": [{}] * (MAX_TRIGGER_RUNS + 1)}, TaskTrigger),
        ({"runs": [{"priority": 1001}]}, TaskTrigger),
    ],
)
def test_out_of_bounds_values_are_refused(body: dict[str, Any], tp: type) -> None:
    refused(body, tp)


def test_update_bodies_carry_only_what_is_set() -> None:
    update = msgspec.json.decode(b'{"description": "new"}', type=JobUpdate)
    assert update.description == "new"
    assert update.name is msgspec.UNSET
    assert msgspec.json.encode(update) == b'{"description":"new"}'
    clear_end = msgspec.json.decode(b'{"end_time": null}', type=ScheduleUpdate)
    assert clear_end.end_time is None
    assert msgspec.json.encode(clear_end) == b'{"end_time":null}'


def test_trigger_carries_count_and_runs_only_when_given() -> None:
    assert msgspec.json.encode(TaskTrigger()) == b'{"parameters":{},"scheduled_at":null,"priority":null}'
    bulk = msgspec.json.decode(b'{"runs": [{}, {"priority": null}]}', type=TaskTrigger)
    assert bulk.count is msgspec.UNSET
    assert bulk.runs == [TriggerRun(), TriggerRun(priority=None)]
    assert msgspec.json.encode(bulk).endswith(b'"runs":[{},{"priority":null}]}')


def test_preview_request_spells_from_without_underscore() -> None:
    request = msgspec.json.decode(
        b'{"kind": "cron", "from": "2024-03-10T00:00:00Z"}', type=SchedulePreviewRequest
    )
    assert request.from_ is not None
    assert request.from_.isoformat() == "2024-03-10T00:00:00+00:00"
    assert b'"from":"2024-03-10T00:00:00Z"' in msgspec.json.encode(request)
