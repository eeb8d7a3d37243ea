"""The CLI against a real database: check before and after migrate, and the token commands.

One fresh database for the module; the tests run in file order and build on each other (an unmigrated
database first, then migrated, then tokens in it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serverfixtures import run_cli

from hetuflow_server.infra.migrator import available_migrations


@pytest.fixture(scope="module")
def where(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``--data-dir`` and ``--database-url`` of the module."""
    return ["--data-dir", str(tmp_path_factory.mktemp("cli") / "data"), "--database-url", database_url]


def test_check_then_migrate_then_check(where: list[str]) -> None:
    names = [migration.name for migration in available_migrations()]
    before = run_cli("check", *where)
    assert before.returncode == 1
    lines = before.stdout.splitlines()
    assert lines[2].split()[:2] == ["database", "ok"]
    assert lines[3].split()[:2] == ["migrations", "FAIL"]
    assert f"{len(names)} of {len(names)} pending" in lines[3]
    assert lines[-1] == "failed: migrations"

    migrated = run_cli("migrate", *where)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"applied {len(names)} migration(s): {', '.join(names)}\n"

    again = run_cli("migrate", *where)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "database schema is up to date\n"

    after = run_cli("check", *where)
    assert after.returncode == 0, after.stdout
    assert after.stdout.splitlines()[3].split()[:2] == ["migrations", "ok"]
    assert after.stdout.splitlines()[-1] == "all checks passed"


def test_token_create_list_revoke(where: list[str]) -> None:
    key_file = Path(where[1]) / "server.jwk"
    # No key yet: a token signed by a key made on the spot would be refused by every server.
    refused = run_cli("token", "create", *where, "--scope", "admin", "--name", "early")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert f"no server key at {key_file}" in refused.stderr
    assert "--data-dir" in refused.stderr
    assert not key_file.exists()
    assert run_cli("keygen", "--data-dir", where[1]).returncode == 0

    created = run_cli(
        "token", "create", *where, "--agent", "worker-01", "--name", "worker-01", "--ttl", "3600"
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("\n") == 1  # the token alone

    listed = run_cli("token", "list", *where, "--json")
    assert listed.returncode == 0, listed.stderr
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["scope"], r["subject"], r["revoked_at"]) for r in records] == [
        ("worker-01", "agent", "worker-01", None)
    ]
    assert created.stdout.strip() not in listed.stdout

    revoked = run_cli("token", "revoke", *where, records[0]["jti"])
    assert revoked.returncode == 0, revoked.stderr
    table = run_cli("token", "list", *where)
    assert table.stdout.splitlines()[0].split() == [
        "JTI",
        "NAME",
        "SCOPE",
        "SUBJECT",
        "CREATED",
        "EXPIRES",
        "STATE",
    ]
    assert table.stdout.splitlines()[1].split()[-1] == "revoked"


def test_revoke_unknown_token_exits_1(where: list[str]) -> None:
    unknown = "01900000-0000-7000-8000-000000000000"
    result = run_cli("token", "revoke", *where, unknown)
    assert result.returncode == 1
    assert result.stderr == f"hetuflow-server: token {unknown} not found\n"
