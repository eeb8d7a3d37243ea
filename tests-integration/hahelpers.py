"""Helpers of the high-availability tests (``test_ha_*.py``): who leads, where agents are, what really ran.

- ``server_ids(pipeline)`` / ``leader(pipeline)`` / ``agent_server(pipeline, agent_id)``: the server rows,
  the lease holder and an agent's server, matched to the running ``ServerProcess`` objects by their
  announced address. Everything here reads the database directly, so it works while servers are frozen.
- ``frozen(server)``: a block during which the server is stopped with SIGSTOP (hung, not dead).
- `Ledger`: a file that every run of a task appends one line to (task id, instance id, attempt), written by
  the task's own process, so counting lines counts real runs whatever the database says.
- ``job_attempts(pipeline, job_id)``: every task of a job with its attempts, in one query (200 tasks would
  be 200 API calls).
- ``wait_job_ended(pipeline, job_id)``: wait until every task of a job has ended; its attempts.
- `assert_ran_once`: every task succeeded with exactly one succeeded attempt, no attempt ran twice.
- ``leader_lease(pipeline)``: the ``leader`` row of ``sched_lease`` (holder, fencing token, acquired_at).
- ``terminate_backends(database_url)``: ``pg_terminate_backend`` on every other connection to the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from pipelinefixtures import FINAL, Pipeline, wait_for
from psycopg.rows import dict_row
from serverfixtures import ServerProcess

__all__ = [
    "Attempt",
    "Ledger",
    "agent_server",
    "assert_ran_once",
    "frozen",
    "job_attempts",
    "leader",
    "leader_lease",
    "server_ids",
    "terminate_backends",
    "wait_job_ended",
    "wait_registered_with",
]


def _rows(pipeline: Pipeline, query: bytes, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a read-only query on the pipeline's database (works while every server is frozen or gone)."""
    with psycopg.connect(pipeline.database_url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def server_ids(pipeline: Pipeline) -> dict[str, str]:
    """``{server id: announced url}`` of every server row (running or not)."""
    return {
        row["id"]: row["address"] for row in _rows(pipeline, b"SELECT id::text, address FROM sched_server")
    }


def _by_url(pipeline: Pipeline, url: str | None) -> ServerProcess | None:
    return next((server for server in pipeline.servers if server.url == url), None)


def leader(pipeline: Pipeline) -> ServerProcess | None:
    """The running server that holds a live leader lease, if any."""
    rows = _rows(
        pipeline,
        b"SELECT s.address FROM sched_lease l JOIN sched_server s ON s.id = l.holder"
        b" WHERE l.name = 'leader' AND l.expires_at > now()",
    )
    return _by_url(pipeline, rows[0]["address"] if rows else None)


def agent_server(pipeline: Pipeline, agent_id: str) -> ServerProcess | None:
    """The running server the agent is registered with, as the database says, if any."""
    rows = _rows(
        pipeline,
        b"SELECT s.address FROM sched_agent a JOIN sched_server s ON s.id = a.server_id"
        b" WHERE a.id = %s AND a.status = 'online'",
        (agent_id,),
    )
    return _by_url(pipeline, rows[0]["address"] if rows else None)


@contextlib.contextmanager
def frozen(server: ServerProcess) -> Iterator[float]:
    """SIGSTOP ``server`` for the block (its connections stay open, nothing answers: a stalled process, a
    stuck event loop, a machine paused); yields the monotonic time of the freeze. SIGCONT afterwards."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield time.monotonic()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def wait_registered_with(pipeline: Pipeline, agent_id: str, server: ServerProcess) -> float:
    """Wait until the agent is online on ``server``; the monotonic time it was seen there."""
    wait_for(lambda: agent_server(pipeline, agent_id) is server, what=f"agent {agent_id} on {server.url}")
    return time.monotonic()


@dataclasses.dataclass(frozen=True)
class Run:
    """One line of a `Ledger`: a process of the task started."""

    task_id: str
    instance_id: str
    attempt: int


class Ledger:
    """A file each run of a task appends one line to (``echo ... >>`` is one atomic append)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()

    def script(self, then: str = "") -> str:
        """A bash script that records its run, then does ``then``."""
        line = '"$HETUFLOW_TASK_ID $HETUFLOW_INSTANCE_ID $HETUFLOW_ATTEMPT"'
        return f"echo {line} >> {self.path}\n{then}\n"

    def runs(self) -> list[Run]:
        """Every run recorded so far, in order."""
        runs = []
        for text in self.path.read_text().splitlines():
            task_id, instance_id, attempt = text.split()
            runs.append(Run(task_id, instance_id, int(attempt)))
        return runs


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One attempt of a task as stored, with its task's status."""

    task_id: str
    task_status: str
    instance_id: str
    instance_status: str
    agent_id: str
    attempt: int
    started_at: Any
    completed_at: Any
    error: str | None


_ATTEMPTS = b"""
SELECT t.id::text AS task_id, t.status AS task_status, i.id::text AS instance_id, i.status AS instance_status,
       i.agent_id, i.attempt, i.started_at, i.completed_at, i.error
FROM sched_task t LEFT JOIN sched_task_instance i ON i.task_id = t.id
WHERE t.job_id = %s
ORDER BY t.id, i.attempt
"""


def job_attempts(pipeline: Pipeline, job_id: str) -> dict[str, list[Attempt]]:
    """``{task id: its attempts, first to last}`` for every task of the job (empty before its first one)."""
    tasks: dict[str, list[Attempt]] = {}
    for row in _rows(pipeline, _ATTEMPTS, (job_id,)):
        attempts = tasks.setdefault(row["task_id"], [])
        if row["instance_id"] is not None:
            attempts.append(Attempt(**row))
    return tasks


def wait_job_ended(pipeline: Pipeline, job_id: str, *, tasks: int | None = None) -> dict[str, list[Attempt]]:
    """Wait until the job has ``tasks`` tasks (when given) and every one has ended; ``job_attempts`` then."""

    def ended() -> dict[str, list[Attempt]] | None:
        attempts = job_attempts(pipeline, job_id)
        if tasks is not None and len(attempts) != tasks:
            return None
        return attempts if all(runs and runs[0].task_status in FINAL for runs in attempts.values()) else None

    return wait_for(ended, what=f"every task of job {job_id} to end")


def assert_ran_once(
    tasks: dict[str, list[Attempt]],
    ledger: Ledger,
    *,
    retried: Iterable[str] = (),
    handed_back: bool = False,
) -> Counter[str]:
    """Every task succeeded with exactly one succeeded attempt, which ran (one ledger line) exactly once, and
    no attempt ran twice. Only the tasks in ``retried`` may have other attempts that ran; with
    ``handed_back`` any task may have attempts that were lost before they ever started (a dispatch that never
    reached its agent). How many attempts ran on each agent."""
    runs = ledger.runs()
    by_instance = Counter(run.instance_id for run in runs)
    twice = [instance for instance, count in by_instance.items() if count > 1]
    assert not twice, f"attempts that ran more than once: {twice}"
    may_retry = set(retried)
    per_agent: Counter[str] = Counter()
    for task_id, attempts in tasks.items():
        assert attempts, f"task {task_id} never got an attempt"
        assert attempts[0].task_status == "succeeded", attempts
        succeeded = [a for a in attempts if a.instance_status == "succeeded"]
        assert len(succeeded) == 1, attempts
        assert by_instance[succeeded[0].instance_id] == 1, f"the succeeded attempt of {task_id} never ran"
        others = [a for a in attempts if a is not succeeded[0]]
        if others and task_id not in may_retry:
            assert handed_back, f"task {task_id} has more than one attempt: {attempts}"
            ran = [a for a in others if a.instance_status != "lost" or by_instance[a.instance_id]]
            assert not ran, f"task {task_id} ran attempts besides the succeeded one: {ran}"
        per_agent.update(a.agent_id for a in attempts if by_instance[a.instance_id])
    strays = {run.task_id for run in runs} - set(tasks)
    assert not strays, f"runs of tasks that are not the job's: {strays}"
    return per_agent


def leader_lease(pipeline: Pipeline) -> dict[str, Any]:
    """The ``leader`` lease row: ``holder`` (a server id), ``token``, ``acquired_at``, ``expires_at``."""
    rows = _rows(
        pipeline,
        b"SELECT holder::text AS holder, token, acquired_at, expires_at"
        b" FROM sched_lease WHERE name = 'leader'",
    )
    assert rows, "nobody ever took the leader lease"
    return rows[0]


_OTHER_BACKENDS = b"""
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


def terminate_backends(database_url: str) -> int:
    """Kill every other client connection to the database (every server's pool and LISTEN connection); how
    many were killed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return sum(1 for (killed,) in conn.execute(_OTHER_BACKENDS).fetchall() if killed)
