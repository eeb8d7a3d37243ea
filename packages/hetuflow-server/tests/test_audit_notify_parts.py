"""The pure parts of auditing and notifications: summaries without secrets, audit targets, signatures."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest

from hetuflow_server.endpoint.api import OPERATION_GROUPS
from hetuflow_server.notifier import sign
from hetuflow_server.service.audit import MAX_ITEMS, REDACTED, summarize

OPERATIONS = {op.operation_id: op for group in OPERATION_GROUPS for op in group.operations}


def test_summaries_replace_secret_values_and_keep_the_rest() -> None:
    body = {
        "name": "backup",
        "config": {"env": {"PGPASSWORD": "s3cret", "MODE": "full"}, "args": ["-v"]},
        "secret": "abc",
        "nested": [{"Password": "p"}, {"token": "t"}],
    }
    assert summarize(body) == {
        "name": "backup",
        "config": {"env": {"PGPASSWORD": REDACTED, "MODE": REDACTED}, "args": ["-v"]},
        "secret": REDACTED,
        "nested": [{"Password": REDACTED}, {"token": REDACTED}],
    }
    assert "s3cret" not in repr(summarize(body))


def test_summaries_are_bounded() -> None:
    long = summarize({"script": "y" * 300, "items": list(range(MAX_ITEMS + 5))})
    assert long["script"] == "y" * 256 + "[44 more characters]"
    assert long["items"][-1] == "[5 more]"
    assert len(long["items"]) == MAX_ITEMS + 1
    assert summarize(None) == {}
    assert summarize([1, 2]) == {"body": [1, 2]}
    deep: dict[str, object] = {}
    cursor = deep
    for _ in range(20):
        cursor["a"] = {}
        cursor = cursor["a"]  # type: ignore[assignment]
    assert "[nested too deep]" in repr(summarize(deep))


@pytest.mark.parametrize(
    ("operation_id", "kwargs", "target"),
    [
        ("cancel_task", {"task_id": uuid.UUID(int=7)}, f"/tasks/{uuid.UUID(int=7)}"),
        ("update_job", {"job_id": uuid.UUID(int=8), "body": None}, f"/jobs/{uuid.UUID(int=8)}"),
        ("fire_event", {"event_name": "deploy", "body": {}}, "/events/deploy"),
        ("drain_agent", {"agent_id": "a-1"}, "/agents/a-1"),
    ],
)
def test_the_target_is_the_resource_path(operation_id: str, kwargs: dict[str, object], target: str) -> None:
    assert OPERATIONS[operation_id].audit_target(kwargs, None) == target


def test_the_signature_is_an_hmac_of_timestamp_and_body() -> None:
    body = b'{"event":"failed"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", body) == f"sha256={expected}"
    assert sign("k", "1700000001", body) != sign("k", "1700000000", body)
    assert sign("other", "1700000000", body) != sign("k", "1700000000", body)
