"""Notifications end to end: real agents run jobs, the server posts signed webhooks to a real HTTP receiver on
loopback and sends email to a real SMTP sink (aiosmtpd), and records every delivery.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pipelinefixtures import AgentPool, Pipeline, wait_for
from serverfixtures import free_port
from webhookfixtures import Receiver, running_receiver

from hetuflow_server.notifier import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SECRET = "webhook-secret-for-tests"
DELIVERIES = "/notifications/deliveries"


class Mailbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def pipeline_env(receiver: Receiver, mailbox: tuple[Mailbox, int]) -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    targets = {
        "hook": {"kind": "webhook", "url": receiver.url, "secret": SECRET, "timeout_secs": 5},
        "dead": {
            "kind": "webhook",
            "url": dead,
            "timeout_secs": 2,
            "max_attempts": 3,
            "retry_backoff_secs": 0.2,
        },
        "mail": {"kind": "email", "to": ["oncall@example.com"], "timeout_secs": 5},
    }
    return {
        "HETUFLOW_NOTIFICATIONS__TARGETS": json.dumps(targets),
        "HETUFLOW_NOTIFICATIONS__SMTP_HOST": "127.0.0.1",
        "HETUFLOW_NOTIFICATIONS__SMTP_PORT": str(mailbox[1]),
        "HETUFLOW_NOTIFICATIONS__SMTP_FROM": "hetuflow@example.com",
    }


def _deliveries(pipeline: Pipeline, task_id: str) -> list[dict[str, Any]]:
    return list(pipeline.call("GET", DELIVERIES, params={"task_id": task_id})["items"])


def _settled(pipeline: Pipeline, task_id: str, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        found = _deliveries(pipeline, task_id)
        done = [d for d in found if d["status"] in ("delivered", "failed")]
        return found if len(found) == count and len(done) == count else None

    return wait_for(check, what=f"{count} settled deliveries of task {task_id}")


def _rule(target: str, *on: str) -> list[dict[str, Any]]:
    return [{"target": target, "on": list(on)}]


def test_a_failing_job_sends_one_signed_webhook(
    pipeline: Pipeline, agents: AgentPool, receiver: Receiver
) -> None:
    agents.start()
    job_id = pipeline.create_job(suite=agents.suite, script="exit 3", notify=_rule("hook", "failed"))
    task_id = pipeline.trigger(job_id)
    pipeline.wait_task(task_id, "failed")
    (delivery,) = _settled(pipeline, task_id, 1)
    assert delivery["status"] == "delivered"
    assert (delivery["event"], delivery["target"], delivery["attempts"]) == ("failed", "hook", 1)
    assert delivery["response_code"] == 204
    ((headers, body),) = receiver.for_task(task_id)
    raw = next(raw for h, raw in receiver.requests if h[DELIVERY_HEADER] == str(delivery["id"]))
    assert headers[SIGNATURE_HEADER] == sign(SECRET, headers[TIMESTAMP_HEADER], raw)
    assert headers[SIGNATURE_HEADER] != sign("another secret", headers[TIMESTAMP_HEADER], raw)
    assert headers[EVENT_HEADER] == "failed"
    assert headers["Content-Type"] == "application/json"
    assert body["event"] == "failed"
    assert body["delivery_id"] == delivery["id"]
    assert (body["job_id"], body["task_id"], body["status"]) == (job_id, task_id, "failed")
    assert body["job_name"] == pipeline.call("GET", f"/jobs/{job_id}")["name"]
    assert body["attempt"] == 1
    assert body == delivery["payload"] | {"delivery_id": delivery["id"], "target": "hook"}


def test_a_succeeding_job_sends_only_what_its_rules_ask_for(
    pipeline: Pipeline, agents: AgentPool, receiver: Receiver
) -> None:
    agents.start()
    quiet = pipeline.trigger(
        pipeline.create_job(suite=agents.suite, script="true", notify=_rule("hook", "failed"))
    )
    told = pipeline.trigger(
        pipeline.create_job(suite=agents.suite, script="true", notify=_rule("hook", "succeeded"))
    )
    pipeline.wait_task(quiet, "succeeded")
    pipeline.wait_task(told, "succeeded")
    # Notifications are queued in the transaction that ends the task: once it has ended, none can follow.
    assert _deliveries(pipeline, quiet) == []
    (delivery,) = _settled(pipeline, told, 1)
    assert (delivery["event"], delivery["status"]) == ("succeeded", "delivered")
    assert receiver.for_task(quiet) == []
    assert [body["event"] for _, body in receiver.for_task(told)] == ["succeeded"]


def test_two_servers_send_each_notification_once(
    pipeline: Pipeline, agents: AgentPool, receiver: Receiver
) -> None:
    # Both notifiers wake on the same NOTIFY and race for the same rows: the claim lets one of them win.
    if len(pipeline.servers) == 1:
        pipeline.start_server("second-notifier")
    agents.start()
    tasks = [
        pipeline.run(suite=agents.suite, script="exit 1", notify=_rule("hook", "failed")) for _ in range(4)
    ]
    for task_id in tasks:
        pipeline.wait_task(task_id, "failed")
    for task_id in tasks:
        (delivery,) = _settled(pipeline, task_id, 1)
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
        assert len(receiver.for_task(task_id)) == 1


def test_retrying_then_failed_are_told_in_order(
    pipeline: Pipeline, agents: AgentPool, receiver: Receiver
) -> None:
    agents.start()
    retry = {"max_retries": 1, "base_secs": 0.1, "jitter": 0}
    job_id = pipeline.create_job(
        suite=agents.suite, script="exit 1", retry=retry, notify=_rule("hook", "retrying", "failed")
    )
    task_id = pipeline.trigger(job_id)
    pipeline.wait_task(task_id, "failed")
    deliveries = _settled(pipeline, task_id, 2)
    assert [d["event"] for d in reversed(deliveries)] == ["retrying", "failed"]
    assert {d["status"] for d in deliveries} == {"delivered"}


def test_a_dead_receiver_is_retried_then_recorded_failed(pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start()
    task_id = pipeline.run(suite=agents.suite, script="exit 2", notify=_rule("dead", "failed"))
    pipeline.wait_task(task_id, "failed")
    (delivery,) = _settled(pipeline, task_id, 1)
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 3
    assert delivery["response_code"] is None
    assert "Connect" in delivery["error"]
    failed = pipeline.call("GET", DELIVERIES, params={"status": "failed", "target": "dead"})["items"]
    assert delivery["id"] in [item["id"] for item in failed]


def test_a_receiver_answering_errors_is_retried_until_it_accepts(
    pipeline: Pipeline, agents: AgentPool, receiver: Receiver
) -> None:
    agents.start()
    receiver.status = 503
    try:
        task_id = pipeline.run(suite=agents.suite, script="exit 4", notify=_rule("hook", "failed"))
        pipeline.wait_task(task_id, "failed")

        def refused() -> dict[str, Any] | None:
            found = _deliveries(pipeline, task_id)
            return found[0] if found and found[0]["response_code"] == 503 else None

        first = wait_for(refused, what="a refused attempt")
        assert first["status"] in ("pending", "sending")
        assert first["error"] == "HTTP 503"
    finally:
        receiver.status = 204
    (delivery,) = _settled(pipeline, task_id, 1)
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] >= 2
    ids = {headers[DELIVERY_HEADER] for headers, _ in receiver.for_task(task_id)}
    assert ids == {str(delivery["id"])}


def test_email_targets_get_one_message(
    pipeline: Pipeline, agents: AgentPool, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    agents.start()
    job_id = pipeline.create_job(suite=agents.suite, script="exit 5", notify=_rule("mail", "failed"))
    task_id = pipeline.trigger(job_id)
    pipeline.wait_task(task_id, "failed")
    (delivery,) = _settled(pipeline, task_id, 1)
    assert (delivery["status"], delivery["response_code"]) == ("delivered", 250)
    name = pipeline.call("GET", f"/jobs/{job_id}")["name"]
    (message,) = [m for m in box.messages if m["Hetuflow-Delivery"] == str(delivery["id"])]
    assert message["To"] == "oncall@example.com"
    assert message["From"] == "hetuflow@example.com"
    assert message["Subject"] == f"[hetuflow] failed: default/{name}"
    assert f"task_id: {task_id}" in message.get_payload()


def test_an_unknown_target_is_refused_when_the_job_is_saved(pipeline: Pipeline) -> None:
    body = {
        "name": "unknown-target",
        "config": {"command": "bash", "script": "true", "notify": _rule("nowhere", "failed")},
    }
    problem = pipeline.call("POST", "/jobs", json=body, expect=422)
    assert problem["errors"][0]["path"] == "$.config.notify[0].target"
