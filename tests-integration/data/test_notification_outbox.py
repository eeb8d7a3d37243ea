"""The notification outbox in the database: triggers queue one row per event and target in the transaction
of the change, claims never hand a row to two notifiers, retention ages finished rows and audit entries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from dbfixtures import MakeJob

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind, NotificationStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.protocol import AgentRegisterData
from hetuflow_core.task import TaskTrigger
from hetuflow_server.config import RetentionSection
from hetuflow_server.infra import ModelManager, bmc
from hetuflow_server.retention import Retention
from hetuflow_server.scheduler.leader import Leadership
from hetuflow_server.service import AgentCapacity, Services


def _rows(url: str, statement: str, *params: object) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        cursor = conn.execute(statement.encode(), params or None)
        return cursor.fetchall() if cursor.description else []


def _queued(url: str, job_id: object) -> list[dict[str, Any]]:
    return _rows(url, "SELECT * FROM sched_notification WHERE job_id = %s ORDER BY id", job_id)


async def test_a_lost_attempt_is_an_offline_event(
    services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    suffix = uuid7().hex[-8:]
    agent_id = f"gone-{suffix}"
    server_id = (await services.servers.register(uuid7(), name=f"s-{suffix}", address=None)).id
    await services.agents.register(
        AgentRegisterData(
            agent_id=agent_id,
            name=agent_id,
            labels={"pool": suffix},
            capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=1),
        ),
        server_id=server_id,
        address=None,
    )
    job = await make_job(
        target={"labels": {"pool": suffix}}, notify=[{"target": "ops", "on": ["offline", "succeeded"]}]
    )
    await services.jobs.trigger(job.id, TaskTrigger())
    capacity = AgentCapacity(
        agent_id=agent_id, labels={"pool": suffix}, commands=[CommandKind.BASH], free_slots=1
    )
    (dispatch,) = await services.dispatch.dispatch([capacity])
    assert _queued(migrated_database_url, job.id) == []
    _rows(
        migrated_database_url,
        "UPDATE sched_task_instance SET status = 'lost', completed_at = now(), error = 'agent offline'"
        " WHERE id = %s",
        dispatch.instance.id,
    )
    (row,) = _queued(migrated_database_url, job.id)
    assert (row["event"], row["target"], row["status"]) == ("offline", "ops", "pending")
    assert row["payload"]["agent_id"] == agent_id
    assert row["payload"]["instance_id"] == str(dispatch.instance.id)
    assert row["payload"]["job_name"] == job.name


async def test_a_missed_slot_is_told_once(
    services: Services, make_job: MakeJob, migrated_database_url: str
) -> None:
    job = await make_job(notify=[{"target": "ops", "on": ["missed"]}, {"target": "mail", "on": ["failed"]}])
    schedule_id = uuid7()
    _rows(
        migrated_database_url,
        "INSERT INTO sched_schedule (id, job_id, kind, interval_secs) VALUES (%s, %s, 'interval', 60)",
        schedule_id,
        job.id,
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(2):  # recorded again (an overwrite): still one event
        _rows(
            migrated_database_url,
            "INSERT INTO sched_schedule_slot (schedule_id, scheduled_at, outcome, detail)"
            " VALUES (%s, %s, 'missed', 'scheduler down') ON CONFLICT (schedule_id, scheduled_at)"
            " DO UPDATE SET detail = excluded.detail",
            schedule_id,
            at,
        )
    (row,) = _queued(migrated_database_url, job.id)
    assert (row["event"], row["target"]) == ("missed", "ops")
    assert row["payload"]["schedule_id"] == str(schedule_id)
    assert row["payload"]["error"] == "scheduler down"


async def test_claims_are_exclusive_and_fenced(
    services: Services, make_job: MakeJob, model_manager: ModelManager, migrated_database_url: str
) -> None:
    job = await make_job(notify=[{"target": "ops", "on": ["failed"]}])
    _rows(migrated_database_url, "UPDATE sched_notification SET status = 'failed', completed_at = now()")
    for _ in range(6):
        _rows(
            migrated_database_url,
            "INSERT INTO sched_notification (event, target, job_id, payload)"
            " VALUES ('failed', 'ops', %s, '{}')",
            job.id,
        )

    async def claim() -> list[bmc.ClaimedNotification]:
        async with model_manager.transaction() as conn:
            claimed = await bmc.NotificationBmc.claim(conn, limit=4, lease_secs=60)
            await asyncio.sleep(0.2)  # hold the row locks while the other claim runs
            return claimed

    first, second = await asyncio.gather(claim(), claim())
    ids = [n.id for n in first + second]
    assert len(ids) == len(set(ids)) == 6
    claimed = first[0]
    assert claimed.attempts == 1
    async with model_manager.transaction() as conn:
        # Nothing is due while the leases run.
        assert await bmc.NotificationBmc.claim(conn, limit=10, lease_secs=60) == []
        stale = await bmc.NotificationBmc.finish(
            conn,
            claimed.id,
            attempts=claimed.attempts + 1,
            status=NotificationStatus.DELIVERED,
            response_code=200,
            error=None,
            next_attempt_at=None,
        )
        assert not stale
        assert await bmc.NotificationBmc.finish(
            conn,
            claimed.id,
            attempts=claimed.attempts,
            status=NotificationStatus.PENDING,
            response_code=500,
            error="HTTP 500",
            next_attempt_at=datetime.now(UTC) - timedelta(seconds=1),
        )
        (again,) = await bmc.NotificationBmc.claim(conn, limit=10, lease_secs=60)
    assert (again.id, again.attempts) == (claimed.id, 2)


async def test_retention_ages_finished_notifications_and_audit_entries(
    model_manager: ModelManager, migrated_database_url: str
) -> None:
    _rows(
        migrated_database_url,
        "INSERT INTO sched_notification (event, target, payload, status, completed_at, created_at)"
        " VALUES ('failed', 'old', '{}', 'delivered', now() - interval '30 days',"
        " now() - interval '31 days'),"
        " ('failed', 'old', '{}', 'pending', NULL, now() - interval '30 days')",
    )
    _rows(
        migrated_database_url,
        "INSERT INTO sched_audit (at, actor, scope, action, method, path, target)"
        " VALUES (now() - interval '400 days', 'old', 'admin', 'create_job', 'POST', '/x', '/x'),"
        " (now(), 'new', 'admin', 'create_job', 'POST', '/x', '/x')",
    )
    async with model_manager.transaction() as conn:
        await conn.execute("DELETE FROM sched_lease")
    leadership = Leadership(model_manager, uuid7(), lease_secs=30)
    assert await leadership.step()
    section = RetentionSection(log_days=14, audit_days=365, notification_days=14)
    report = await Retention(model_manager, leadership, section, heartbeat_interval_secs=5.0).run_once()
    assert report.audit >= 1
    assert report.notifications >= 1
    assert _rows(migrated_database_url, "SELECT status FROM sched_notification WHERE target = 'old'") == [
        {"status": "pending"}
    ]
    assert [r["actor"] for r in _rows(migrated_database_url, "SELECT actor FROM sched_audit")] == ["new"]


@pytest.mark.parametrize("days", [0])
async def test_zero_days_keeps_everything(
    model_manager: ModelManager, migrated_database_url: str, days: int
) -> None:
    _rows(
        migrated_database_url,
        "INSERT INTO sched_audit (at, actor, scope, action, method, path, target)"
        " VALUES (now() - interval '4000 days', 'ancient', 'admin', 'create_job', 'POST', '/x', '/x')",
    )
    async with model_manager.transaction() as conn:
        await conn.execute("DELETE FROM sched_lease")
    leadership = Leadership(model_manager, uuid7(), lease_secs=30)
    assert await leadership.step()
    section = RetentionSection(audit_days=0, notification_days=0)
    report = await Retention(model_manager, leadership, section, heartbeat_interval_secs=5.0).run_once()
    assert (report.audit, report.notifications) == (0, 0)
    assert _rows(migrated_database_url, "SELECT actor FROM sched_audit WHERE actor = 'ancient'") != []
