"""Scale of one server: many idle agents, a long task list, an idle agent's memory.

- **agents**: ``count`` simulated agents (``_sim``), idle, heartbeating at the server's default interval.
  The server process's CPU share (user + system time over wall time, from psutil) and RSS are sampled over
  ``seconds``, with the heartbeat round trips the agents saw and the server's garbage collections (from its
  ``hetuflow_gc_pause_seconds``); then one task is triggered, and it must still be dispatched, run and
  reported.
- **task list**: ``rows`` finished task rows written with one ``INSERT … SELECT generate_series`` (90 %
  succeeded, 10 % failed, spread over 30 days), then ``GET /api/v1/tasks`` (first page of 100, and
  ``status=failed``) timed over ``requests`` sequential requests each.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import msgspec
import psutil
from _hetuflow import Hetuflow
from _sim import simulated_agents
from api_bench import measure
from pipeline_bench import wait_done
from prometheus_client.parser import text_string_to_metric_families

from hetuflow_core import CommandKind, JobConfig


class AgentsScale(NamedTuple):
    agents: int
    cpu_percent: float
    rss: int
    dispatch_ms: float
    """Trigger → dispatched, of the one task triggered while all agents were connected."""
    done_ms: float
    """Trigger → succeeded, of that task."""
    disconnects: int
    heartbeat_p50_ms: float
    heartbeat_p99_ms: float
    """Heartbeat round trips the simulated agents measured (request → answer, their clock)."""
    gc_pauses: int
    gc_over_20ms: int
    """Garbage collections of the server during the run, and those that stopped it for more than 20 ms."""


def gc_pauses(h: Hetuflow) -> tuple[int, int]:
    """Collections so far in the server process, and those over 20 ms (``hetuflow_gc_pause_seconds``)."""
    text = h.client.get("/metrics").raise_for_status().text
    total = short = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "hetuflow_gc_pause_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                total += sample.value
            elif sample.name.endswith("_bucket") and sample.labels.get("le") == "0.02":
                short += sample.value
    return int(total), int(total - short)


def idle_agents(h: Hetuflow, count: int, seconds: float) -> AgentsScale:
    server = psutil.Process(h.server.pid)
    with simulated_agents(h.client, h.root, "scale", count, 4) as sim:
        time.sleep(2.0)  # registration work settles
        pauses_before = gc_pauses(h)
        before, began = server.cpu_times(), time.monotonic()
        time.sleep(seconds)
        after, wall = server.cpu_times(), time.monotonic() - began
        pauses_after = gc_pauses(h)
        rss = server.memory_info().rss
        job_id = h.new_job("scale-one")
        h.trigger(job_id, 1)
        wait_done(h.conn, job_id, 1)
    h.check_exactly_once("one task among many agents", job_id, 1)
    row = h.conn.execute(
        "SELECT extract(epoch FROM i.dispatched_at - t.created_at) * 1000,"
        " extract(epoch FROM t.completed_at - t.created_at) * 1000"
        " FROM sched_task t JOIN sched_task_instance i ON i.task_id = t.id WHERE t.job_id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    busy = (after.user - before.user) + (after.system - before.system)
    counters = sim.counters
    return AgentsScale(
        count,
        busy / wall * 100,
        rss,
        float(row[0]),
        float(row[1]),
        int(counters.get("disconnects", -1)),
        counters.get("heartbeat_p50_ms", 0.0),
        counters.get("heartbeat_p99_ms", 0.0),
        pauses_after[0] - pauses_before[0],
        pauses_after[1] - pauses_before[1],
    )


def load_history(h: Hetuflow, rows: int) -> None:
    """``rows`` finished tasks of one job over the last 30 days, in one statement."""
    job_id = h.new_job("history")
    config = msgspec.json.encode(JobConfig(command=CommandKind.BASH, script="true")).decode()
    h.conn.execute(
        "INSERT INTO sched_task (id, job_id, origin, scheduled_at, parameters, config, status, attempt,"
        " agent_id, completed_at)"
        " SELECT gen_random_uuid(), %(job)s, 'manual', at, '{}', %(config)s::jsonb,"
        " CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 'bench-history', at + interval '5 s'"
        " FROM generate_series(1, %(rows)s) AS g,"
        " LATERAL (SELECT now() - interval '30 days' + g * (interval '30 days' / %(rows)s)) AS t(at)",
        {"job": job_id, "config": config, "rows": rows},
    )
    h.conn.execute("ANALYZE sched_task")


def list_latency(h: Hetuflow, requests: int) -> dict[str, list[float]]:
    """Latencies (ms) of ``GET /api/v1/tasks`` pages: the first page, and ``status=failed``."""
    results = {}
    for name, params in (
        ("first page", {"limit": "100"}),
        ("status=failed", {"limit": "100", "status": "failed"}),
    ):

        def call(params: dict[str, str] = params) -> None:
            h.client.get("/api/v1/tasks", params=params).raise_for_status()

        results[name] = measure(call, requests)
    return results
