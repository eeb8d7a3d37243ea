"""Migrations: applied to an empty database they produce the schema that docs/architecture.md describes
("The schema"), re-running is a no-op, and two servers migrating at once do not race."""

from __future__ import annotations

import asyncio
import re
import uuid

import pgfixture
import psycopg
import pytest

from hetuflow_core import enums
from hetuflow_server.infra import migrate, pending_migrations
from hetuflow_server.infra.migrator import available_migrations

TABLES = {
    "schema_migrations",
    "sched_server",
    "sched_lease",
    "sched_agent",
    "sched_agent_msg",
    "sched_job",
    "sched_schedule",
    "sched_flow",
    "sched_flow_run",
    "sched_task",
    "sched_task_instance",
    "sched_task_log",
    "sched_schedule_slot",
    "sched_token",
    "sched_uptime",
    "sched_audit",
    "sched_notification",
}

# Every enum column and the hetuflow-core enum whose values its CHECK constraint must list.
ENUM_CHECKS = {
    "sched_server_status_check": enums.ServerStatus,
    "sched_agent_status_check": enums.AgentStatus,
    "sched_job_status_check": enums.JobStatus,
    "sched_schedule_kind_check": enums.ScheduleKind,
    "sched_schedule_misfire_policy_check": enums.MisfirePolicy,
    "sched_schedule_status_check": enums.ScheduleStatus,
    "sched_flow_status_check": enums.JobStatus,
    "sched_flow_run_status_check": enums.FlowRunStatus,
    "sched_task_status_check": enums.TaskStatus,
    "sched_task_instance_status_check": enums.InstanceStatus,
    "sched_task_instance_reported_status_check": enums.InstanceStatus,
    "sched_task_log_stream_check": enums.LogStream,
    "sched_schedule_slot_outcome_check": enums.SlotOutcome,
    "sched_token_scope_check": enums.TokenScope,
    "sched_audit_scope_check": enums.TokenScope,
    "sched_notification_event_check": enums.NotificationEvent,
    "sched_notification_status_check": enums.NotificationStatus,
}


@pytest.fixture(scope="module")
def schema(database_url: str) -> str:
    """The module database, migrated once by the first test that needs it."""
    applied = asyncio.run(migrate(database_url))
    assert applied == [m.name for m in available_migrations()]
    return database_url


def _rows(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement.encode(), params or None).fetchall()


def test_migration_files_are_numbered_in_sequence() -> None:
    names = [m.name for m in available_migrations()]
    assert names[0] == "0001_initial"
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+", name) for name in names)


def test_all_tables_exist(schema: str) -> None:
    rows = _rows(schema, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {row[0] for row in rows} == TABLES


def test_enum_checks_list_exactly_the_core_enum_values(schema: str) -> None:
    rows = _rows(schema, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c'")
    definitions = {str(name): str(definition) for name, definition in rows}
    for constraint, enum in ENUM_CHECKS.items():
        assert constraint in definitions, constraint
        values = set(re.findall(r"'([a-z_]+)'::text", definitions[constraint]))
        assert values == {member.value for member in enum}, constraint


def test_every_enum_like_text_column_has_a_check(schema: str) -> None:
    rows = _rows(
        schema,
        "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 "
        "AND a.attname IN ('status', 'kind', 'scope', 'stream', 'outcome', 'misfire_policy', 'origin')",
    )
    checks = _rows(
        schema,
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c'",
    )
    for table, column in rows:
        assert any(t == table and re.search(rf"\b{column}\b = ANY", str(d)) for t, d in checks), (
            table,
            column,
        )


def test_foreign_keys_have_deliberate_on_delete(schema: str) -> None:
    rows = _rows(
        schema,
        "SELECT conname, confdeltype FROM pg_constraint WHERE contype = 'f' ORDER BY conname",
    )
    actions = {str(name): str(action) for name, action in rows}
    # c = cascade, n = set null, r = restrict
    assert actions == {
        "sched_agent_msg_agent_id_fkey": "c",
        "sched_agent_server_id_fkey": "n",
        "sched_flow_run_flow_id_fkey": "c",
        "sched_flow_run_schedule_id_fkey": "n",
        "sched_schedule_flow_id_fkey": "c",
        "sched_schedule_job_id_fkey": "c",
        "sched_schedule_slot_flow_run_id_fkey": "c",
        "sched_schedule_slot_schedule_id_fkey": "c",
        "sched_schedule_slot_task_id_fkey": "c",
        "sched_task_flow_run_id_fkey": "n",
        "sched_task_instance_id_fkey": "n",
        "sched_task_instance_job_id_fkey": "r",
        "sched_task_instance_task_id_fkey": "c",
        "sched_task_job_id_fkey": "r",
        "sched_task_log_instance_id_fkey": "c",
        "sched_task_retry_of_fkey": "n",
        "sched_task_schedule_id_fkey": "n",
    }


def test_key_indexes_exist_with_their_predicates(schema: str) -> None:
    rows = _rows(schema, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    indexes = {str(name): str(definition) for name, definition in rows}
    claim = indexes["sched_task_claim_idx"]
    assert "(priority DESC, scheduled_at, id)" in claim
    assert "WHERE (status = 'pending'::text)" in claim
    assert "UNIQUE" in indexes["sched_task_schedule_slot_key"]
    # One task per slot and pin (0003: a broadcast slot has a copy per agent).
    assert "(schedule_id, scheduled_at, COALESCE" in indexes["sched_task_schedule_slot_key"]
    daemon_live = indexes["sched_task_daemon_live_key"]
    assert "UNIQUE" in daemon_live
    assert "WHERE ((origin = 'daemon'::text)" in daemon_live
    job_name = indexes["sched_job_namespace_name_key"]
    assert "UNIQUE" in job_name
    assert "WHERE (deleted_at IS NULL)" in job_name
    assert "(scheduled_at DESC, id DESC)" in indexes["sched_task_list_idx"]
    assert "(instance_id, id)" in indexes["sched_task_log_read_idx"]
    assert "(instance_id, stream, seq)" in indexes["sched_task_log_pkey"]
    assert "UNIQUE" in indexes["sched_task_instance_attempt_key"]
    assert "(schedule_id, scheduled_at)" in indexes["sched_schedule_slot_pkey"]


def test_every_foreign_key_column_is_indexed(schema: str) -> None:
    # Deleting a referenced row must not scan the referencing table.
    fks = _rows(
        schema,
        "SELECT conrelid::regclass::text, a.attname FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] WHERE c.contype = 'f'",
    )
    indexes = _rows(
        schema,
        "SELECT t.relname, a.attname FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]",
    )
    leading = {(str(t), str(c)) for t, c in indexes}
    missing = [(t, c) for t, c in fks if (str(t), str(c)) not in leading]
    assert missing == []


def test_schema_migrations_records_each_file(schema: str) -> None:
    rows = _rows(schema, "SELECT name FROM schema_migrations ORDER BY name")
    assert [row[0] for row in rows] == [m.name for m in available_migrations()]


async def test_rerun_is_a_noop_and_nothing_is_pending(schema: str) -> None:
    assert await migrate(schema) == []
    async with await psycopg.AsyncConnection.connect(schema) as conn:
        assert await pending_migrations(conn) == []


async def test_concurrent_migrations_apply_once(pg_admin_url: str) -> None:
    with pgfixture.fresh_database(pg_admin_url, "concurrent_migrate") as url:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            assert await pending_migrations(conn) == [m.name for m in available_migrations()]
        results = await asyncio.gather(*(migrate(url) for _ in range(3)))
        assert sorted(results, key=len) == [[], [], [m.name for m in available_migrations()]]
        assert len(_rows(url, "SELECT name FROM schema_migrations")) == len(available_migrations())


async def test_unreachable_database_is_database_unavailable() -> None:
    from hetuflow_server.errors import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable):
        await migrate("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


async def test_new_misfire_defaults_leave_existing_schedules_as_they_were(pg_admin_url: str) -> None:
    with pgfixture.fresh_database(pg_admin_url, "misfire_defaults") as url:
        before = [m for m in available_migrations() if m.name < "0004"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(b"CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz)")
            for migration in before:
                with conn.transaction():
                    conn.execute(migration.text.encode())
                    conn.execute(b"INSERT INTO schema_migrations (name) VALUES (%s)", (migration.name,))
            # A schedule stored by an earlier version, which wrote the old defaults (skip, no grace).
            job, old = uuid.uuid4(), uuid.uuid4()
            conn.execute(
                b"INSERT INTO sched_job (id, namespace, name, config) VALUES (%s, 'default', 'j', "
                b'\'{"command": "bash"}\')',
                (job,),
            )
            conn.execute(
                b"INSERT INTO sched_schedule (id, job_id, kind, interval_secs, misfire_policy, "
                b"misfire_grace_secs) VALUES (%s, %s, 'interval', 60, 'skip', 0)",
                (old, job),
            )
        applied = await migrate(url)
        assert applied[0] == "0004_misfire_defaults"
        new = uuid.uuid4()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                b"INSERT INTO sched_schedule (id, job_id, kind, interval_secs) "
                b"VALUES (%s, %s, 'interval', 60)",
                (new, job),
            )
            rows = conn.execute(
                b"SELECT id, misfire_policy, misfire_grace_secs, start_deadline_secs FROM sched_schedule"
            ).fetchall()
        assert {row[0]: row[1:] for row in rows} == {old: ("skip", 0, None), new: ("run_once", 60, None)}
