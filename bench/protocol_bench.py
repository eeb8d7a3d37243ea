"""Throughput of the hetuflow WebSocket codec against a stdlib ``json`` round trip of the same data.

Measures encode + decode round trips per second for the two frames that dominate traffic: a dispatch
(``ScheduledTask``, server → agent) and a status report (``TaskInstanceUpdated``, agent → server).
hetuflow's side is ``protocol.encode`` then ``protocol.decode`` into validated Structs; the baseline is
``json.dumps(...).encode()`` then ``json.loads(...)`` of the frame as plain dicts, which validates
nothing, so the ratio understates what the typed codec saves over dict-plus-manual-checks code.

Run: ``python bench/protocol_bench.py [--seconds S] [--quick]`` (about 10 s with the default S = 0.35).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from hetuflow_core import (
    CommandKind,
    InstanceMetrics,
    InstanceStatus,
    JobConfig,
    ResourceLimits,
    RetryPolicy,
    Target,
    uuid7,
)
from hetuflow_core.protocol import (
    Message,
    ScheduledTask,
    ScheduledTaskData,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    decode,
    encode,
)

REPEATS = 5


def dispatch_frame() -> ScheduledTask:
    """A typical dispatch: a bash script job with env, labels, limits and a few parameters."""
    now = datetime.now(UTC)
    return ScheduledTask(
        data=ScheduledTaskData(
            instance_id=uuid7(),
            task_id=uuid7(),
            job_id=uuid7(),
            attempt=1,
            scheduled_at=now,
            fire_at=now,
            config=JobConfig(
                command=CommandKind.BASH,
                script='set -euo pipefail\n./build-report --day "$DAY" --out /tmp/report.html\n',
                env={"DAY": "2024-03-10", "REPORT_BUCKET": "s3://reports", "LOG_LEVEL": "info"},
                workdir="/srv/reports",
                timeout_secs=600.0,
                retry=RetryPolicy(max_retries=3, base_secs=5.0),
                limits=ResourceLimits(memory_mb=512, cpu_secs=300, max_output_bytes=1_048_576),
                target=Target(labels={"region": "eu-west-1", "pool": "reports"}),
                priority=10,
            ),
            parameters={"day": "2024-03-10", "recipients": ["ops@example.com"], "dry_run": False},
        )
    )


def status_frame() -> TaskInstanceUpdated:
    """A typical final status report with an output tail and metrics."""
    return TaskInstanceUpdated(
        data=TaskInstanceUpdatedData(
            instance_id=uuid7(),
            task_id=uuid7(),
            status=InstanceStatus.SUCCEEDED,
            seq=4,
            at=datetime.now(UTC),
            exit_code=0,
            output="report built: 1,204 rows, 3 charts\nuploaded s3://reports/2024-03-10.html\n",
            metrics=InstanceMetrics(peak_rss_bytes=84_934_656, cpu_secs=12.5, duration_secs=31.25),
        )
    )


def rate(round_trip: Callable[[], object], seconds: float) -> float:
    """Round trips per second: the best of ``REPEATS`` runs of about ``seconds`` each."""
    loops = 1
    while True:  # calibrate: find a loop count that takes at least a tenth of a run
        start = time.perf_counter()
        for _ in range(loops):
            round_trip()
        if (elapsed := time.perf_counter() - start) >= seconds / 10:
            break
        loops *= 2
    loops = max(1, int(loops * seconds / elapsed))
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(loops):
            round_trip()
        rates.append(loops / (time.perf_counter() - start))
    return max(rates)


def measure(name: str, frame: Message, seconds: float) -> dict[str, Any]:
    wire = encode(frame)
    assert decode(wire) == frame, "the codec must round-trip the benchmark frame"
    as_dicts = msgspec.to_builtins(frame)
    assert json.loads(json.dumps(as_dicts)) == as_dicts

    def hetuflow() -> object:
        return decode(encode(frame))

    def stdlib() -> object:
        return json.loads(json.dumps(as_dicts).encode())

    ours, theirs = rate(hetuflow, seconds), rate(stdlib, seconds)
    return {"frame": name, "bytes": len(wire), "hetuflow": ours, "json": theirs, "ratio": ours / theirs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--seconds", type=float, help="length of one timed run (default 0.35, --quick 0.1)")
    parser.add_argument("--quick", action="store_true", help="shorter timed runs")
    # `nox -s bench -- ARGS` hands the same arguments to every benchmark: ignore the ones meant for others.
    args, _ = parser.parse_known_args(argv)
    if args.seconds is None:
        args.seconds = 0.1 if args.quick else 0.35
    if args.seconds <= 0:
        parser.error("--seconds must be positive")

    rows = [
        measure("dispatch (task.dispatch)", dispatch_frame(), args.seconds),
        measure("status (instance.updated)", status_frame(), args.seconds),
    ]
    versions = f"python {sys.version.split()[0]}, msgspec {msgspec.__version__}"
    print(f"{versions}; encode+decode round trips per second, best of {REPEATS}")
    header = f"{'frame':<27} {'bytes':>6} {'hetuflow msg/s':>15} {'json msg/s':>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['frame']:<27} {row['bytes']:>6} {row['hetuflow']:>15,.0f} {row['json']:>12,.0f}"
            f" {row['ratio']:>6.2f}x"
        )
    print(f"geometric mean ratio: {statistics.geometric_mean(r['ratio'] for r in rows):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
