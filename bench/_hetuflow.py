"""hetuflow on the benchmark's workload: a real ``hetuflow-server serve``, real agents, the REST API.

Every run uses a fresh job whose config is a bash script ``true``, and ends with the exactly-once check:
the job has exactly ``count`` tasks, each succeeded on its first attempt, and exactly ``count`` attempts
(instances), each succeeded. Times come from the database (``created_at`` of a task, ``started_at`` and
``completed_at`` of its instance), all on this machine's clock.

- **drained**: the tasks are triggered through the API while no agent is connected; then one agent
  (capacity = the concurrency) starts. The rate is the count over first process start → last completion.
  When the tasks are triggered one by one (16 clients), those requests also give the trigger latency.
- **end to end**: the agent is connected; the tasks are triggered one by one through
  ``POST /api/v1/jobs/{id}/trigger`` by 16 concurrent clients. The rate is the count over first submit →
  last completion; trigger → process start is ``started_at - created_at`` per task.
- **end to end, bulk**: the same with the tasks submitted through the bulk form (below), 100 per request;
  the rate is the count over first submit → last completion.
- **submit**: with a bulk form of trigger (a ``count`` field in the trigger body, found in the OpenAPI
  document), the drained run's tasks are submitted with it and its rate is ``submit_per_s``; without one,
  ``submit_per_s`` is the rate of the 16 clients' single triggers.
- **fire delay**: tasks triggered for a time 2 s ahead (one every 100 ms) on an idle agent: due time →
  process start.
- **dispatch capacity**: simulated agents (``_sim``) that run nothing; tasks inserted at once with ``COPY``
  go through the whole state machine; the rate is the count over insert → last completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import psutil
import psycopg
from _peers._record import ExactlyOnceError
from _sim import simulated_agents
from api_bench import BenchServer, percentile
from pipeline_bench import create_job, insert_tasks, running_agents, wait_done

TRIGGER_CLIENTS = 16
BULK_BATCH = 1000
E2E_BULK_BATCH = 100
"""Tasks per request of the bulk end-to-end run: a tenth of Procrastinate's ``batch_defer`` batches."""
FIRE_LEAD_SECS = 2.0
FIRE_SPACING_SECS = 0.1


class Submission(NamedTuple):
    """How a batch of triggers went: epoch times of the first and last request, per-request latencies."""

    first: float
    last: float
    tasks: int
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.tasks / (self.last - self.first)


class Drained(NamedTuple):
    rate: float
    submission: Submission


class EndToEnd(NamedTuple):
    rate: float
    submission: Submission
    start_ms: list[float]
    """Trigger → process start of every task, in ms."""


class FireDelay(NamedTuple):
    delays_ms: list[float]
    idle_agent_rss: int


def bulk_trigger_field(client: httpx.Client) -> str | None:
    """``count`` when the trigger body of this server's OpenAPI document has that field, else None."""
    document = client.get("/api/openapi.json").raise_for_status().json()
    operation = document["paths"].get("/api/v1/jobs/{job_id}/trigger", {}).get("post", {})
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    for choice in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        ref = choice.get("$ref", "")
        resolved = document.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], choice)
        if "count" in resolved.get("properties", {}):
            return "count"
    return None


async def _singles(
    base_url: str,
    headers: dict[str, str],
    job_id: str,
    count: int,
    bodies: list[dict[str, Any]] | None = None,
) -> Submission:
    """``count`` single triggers of ``job_id`` by ``TRIGGER_CLIENTS`` concurrent keep-alive clients."""
    next_index = 0
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=TRIGGER_CLIENTS, max_keepalive_connections=TRIGGER_CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120, limits=limits) as client:

        async def trigger_loop() -> None:
            nonlocal next_index
            while next_index < count:
                index = next_index
                next_index += 1
                began = time.perf_counter()
                body = bodies[index] if bodies is not None else None
                response = await client.post(f"/api/v1/jobs/{job_id}/trigger", json=body)
                latencies.append((time.perf_counter() - began) * 1000)
                if response.status_code != 201:
                    raise RuntimeError(f"trigger answered {response.status_code}: {response.text}")

        first = time.time()
        await asyncio.gather(*(trigger_loop() for _ in range(TRIGGER_CLIENTS)))
        return Submission(first, time.time(), count, latencies)


async def _bulk(
    base_url: str, headers: dict[str, str], job_id: str, count: int, field: str, batch: int = BULK_BATCH
) -> Submission:
    """``count`` tasks of ``job_id`` through the bulk trigger form, ``batch`` per request."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        first = time.time()
        for begin in range(0, count, batch):
            size = min(batch, count - begin)
            began = time.perf_counter()
            response = await client.post(f"/api/v1/jobs/{job_id}/trigger", json={field: size})
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 201 or len(response.json()["task_ids"]) != size:
                raise RuntimeError(f"bulk trigger answered {response.status_code}: {response.text[:300]}")
        return Submission(first, time.time(), count, latencies)


class Hetuflow:
    """The server under test and the measurements made on it."""

    def __init__(self, server: BenchServer, root: Path, concurrency: int) -> None:
        self.server = server
        self.client = server.client
        self.root = root
        self.concurrency = concurrency
        self.conn: psycopg.Connection[Any] = psycopg.connect(server.database_url, autocommit=True)
        self.bulk_field = bulk_trigger_field(self.client)
        self._headers = {"Authorization": self.client.headers["Authorization"]}
        self._jobs = 0

    def close(self) -> None:
        self.conn.close()

    # -- helpers ------------------------------------------------------------------------------------------

    def new_job(self, name: str) -> str:
        self._jobs += 1
        return create_job(self.client, f"{name}-{self._jobs}")

    def trigger(self, job_id: str, count: int, bodies: list[dict[str, Any]] | None = None) -> Submission:
        return asyncio.run(_singles(self.server.base_url, self._headers, job_id, count, bodies))

    def trigger_bulk(self, job_id: str, count: int, batch: int = BULK_BATCH) -> Submission:
        assert self.bulk_field is not None
        return asyncio.run(_bulk(self.server.base_url, self._headers, job_id, count, self.bulk_field, batch))

    @contextlib.contextmanager
    def agent(self) -> Iterator[psutil.Process]:
        """One real ``hetuflow-agent run`` with capacity = the concurrency, registered for the block."""
        with running_agents(self.server.base_url, self.client, self.root, 1, self.concurrency) as processes:
            yield psutil.Process(processes[0].pid)

    def check_exactly_once(self, what: str, job_id: str, count: int) -> None:
        """Raise ``ExactlyOnceError`` unless every task of the job succeeded once, on one attempt."""
        tasks = self.conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded' AND attempt = 1)"
            " FROM sched_task WHERE job_id = %s",
            (job_id,),
        ).fetchone()
        instances = self.conn.execute(
            "SELECT count(*), count(DISTINCT task_id), count(*) FILTER (WHERE status = 'succeeded')"
            " FROM sched_task_instance WHERE job_id = %s",
            (job_id,),
        ).fetchone()
        if tasks != (count, count) or instances != (count, count, count):
            raise ExactlyOnceError(
                f"hetuflow {what}: {count} tasks expected; tasks (all, succeeded on attempt 1) = {tasks},"
                f" instances (all, distinct tasks, succeeded) = {instances}"
            )

    def _span(self, job_id: str) -> tuple[float, float, float]:
        """Epoch seconds of the first task created, the first process start and the last completion."""
        row = self.conn.execute(
            "SELECT extract(epoch FROM min(t.created_at)), extract(epoch FROM min(i.started_at)),"
            " extract(epoch FROM max(i.completed_at))"
            " FROM sched_task t JOIN sched_task_instance i ON i.task_id = t.id WHERE t.job_id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        return float(row[0]), float(row[1]), float(row[2])

    def _submit(self, job_id: str, count: int) -> Submission:
        return self.trigger_bulk(job_id, count) if self.bulk_field else self.trigger(job_id, count)

    # -- measurements -------------------------------------------------------------------------------------

    def drained(self, count: int) -> Drained:
        job_id = self.new_job("drained")
        submission = self._submit(job_id, count)
        with self.agent():
            wait_done(self.conn, job_id, count)
        self.check_exactly_once("drained", job_id, count)
        _, first_start, last_end = self._span(job_id)
        return Drained(count / (last_end - first_start), submission)

    def trigger_latency(self, count: int) -> Submission:
        """Single triggers by 16 clients, no agent; the job is deleted after, and its tasks with it."""
        job_id = self.new_job("trigger-latency")
        submission = self.trigger(job_id, count)
        self.client.delete(f"/api/v1/jobs/{job_id}").raise_for_status()
        return submission

    def end_to_end(
        self, count: int, during: Callable[[int], contextlib.AbstractContextManager[Any]] | None = None
    ) -> EndToEnd:
        """The end-to-end run; ``during(agent_pid)`` (a profiler) is entered once the agent is up."""
        job_id = self.new_job("e2e")
        with self.agent() as agent, during(agent.pid) if during else contextlib.nullcontext():
            submission = self.trigger(job_id, count)
            wait_done(self.conn, job_id, count)
        self.check_exactly_once("end to end", job_id, count)
        _, _, last_end = self._span(job_id)
        rows = self.conn.execute(
            "SELECT extract(epoch FROM i.started_at - t.created_at) * 1000"
            " FROM sched_task t JOIN sched_task_instance i ON i.task_id = t.id WHERE t.job_id = %s",
            (job_id,),
        ).fetchall()
        return EndToEnd(count / (last_end - submission.first), submission, [float(r[0]) for r in rows])

    def end_to_end_bulk(self, count: int) -> float:
        """The end-to-end run with the tasks submitted through the bulk form, ``E2E_BULK_BATCH`` per request,
        while the agent runs (as Procrastinate's run submits with ``batch_defer``); tasks/s."""
        job_id = self.new_job("e2e-bulk")
        with self.agent():
            submission = self.trigger_bulk(job_id, count, E2E_BULK_BATCH)
            wait_done(self.conn, job_id, count)
        self.check_exactly_once("end to end (bulk)", job_id, count)
        _, _, last_end = self._span(job_id)
        return count / (last_end - submission.first)

    def fire_delay(self, count: int) -> FireDelay:
        """Tasks due ``FIRE_LEAD_SECS`` ahead, one every ``FIRE_SPACING_SECS``, on an idle connected agent."""
        job_id = self.new_job("fire-delay")
        with self.agent() as agent:
            time.sleep(1.0)  # let the fresh agent settle: this is its idle footprint
            rss = agent.memory_info().rss
            base = datetime.now(UTC) + timedelta(seconds=FIRE_LEAD_SECS)
            due = [base + timedelta(seconds=FIRE_SPACING_SECS * index) for index in range(count)]
            self.trigger(job_id, count, [{"scheduled_at": at.isoformat()} for at in due])
            wait_done(self.conn, job_id, count)
        self.check_exactly_once("fire delay", job_id, count)
        rows = self.conn.execute(
            "SELECT extract(epoch FROM i.started_at - t.scheduled_at) * 1000"
            " FROM sched_task t JOIN sched_task_instance i ON i.task_id = t.id WHERE t.job_id = %s",
            (job_id,),
        ).fetchall()
        return FireDelay([float(r[0]) for r in rows], rss)

    def dispatch_capacity(self, agents: int, capacity: int, count: int) -> float:
        """Tasks/s through the state machine with ``agents`` simulated agents that run nothing."""
        job_id = self.new_job("dispatch-capacity")
        with simulated_agents(self.client, self.root, "sim", agents, capacity) as sim:
            insert_tasks(self.conn, job_id, count)
            wait_done(self.conn, job_id, count)
        if sim.counters.get("duplicates"):
            raise ExactlyOnceError(f"simulated agents received {sim.counters['duplicates']} dispatches twice")
        self.check_exactly_once("dispatch capacity", job_id, count)
        first_created, _, last_end = self._span(job_id)
        return count / (last_end - first_created)


def p50_p99(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), percentile(samples, 0.99)
