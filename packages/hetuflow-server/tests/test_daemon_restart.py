"""Unit tests of the daemon restart rule (``scheduler.daemon``): short-run streaks, backoff delays, the next
start, the run's config snapshot, and which pins a job's target still asks for. Pure: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from hetuflow_core.enums import BackoffKind, CommandKind, RoutingPolicy, TaskStatus
from hetuflow_core.job import JobConfig, RetryPolicy, Target
from hetuflow_server.infra import bmc
from hetuflow_server.scheduler import daemon
from hetuflow_server.service import new_tasks

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def run(ran_secs: float | None, *, ended: datetime = T0) -> bmc.DaemonRun:
    """A finished run that ended at ``ended`` after its process lived ``ran_secs`` (None: never started)."""
    started = None if ran_secs is None else ended - timedelta(seconds=ran_secs)
    return bmc.DaemonRun(
        task_id=uuid4(), status=TaskStatus.FAILED, scheduled_at=ended, completed_at=ended, started_at=started
    )


def test_streak_counts_short_runs_until_a_healthy_one() -> None:
    assert daemon.unhealthy_streak([]) == 0
    assert daemon.unhealthy_streak([run(1), run(2), run(None)]) == 3
    assert daemon.unhealthy_streak([run(1), run(120), run(1)]) == 1
    assert daemon.unhealthy_streak([run(60), run(1)]) == 0  # 60 s is healthy (inclusive)
    assert daemon.unhealthy_streak([run(5), run(10)], healthy_secs=5) == 0


def test_running_task_never_counts_as_healthy() -> None:
    unfinished = bmc.DaemonRun(
        task_id=uuid4(), status=TaskStatus.RUNNING, scheduled_at=T0, completed_at=None, started_at=T0
    )
    assert daemon.unhealthy_streak([unfinished]) == 1


def test_delay_grows_exponentially_up_to_max() -> None:
    policy = RetryPolicy(base_secs=2, max_secs=10, jitter=0)
    assert [daemon.restart_delay(policy, n) for n in range(6)] == [0.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_delay_fixed_policy_and_jitter() -> None:
    fixed = RetryPolicy(backoff=BackoffKind.FIXED, base_secs=3, jitter=0.5)
    assert daemon.restart_delay(fixed, 5) == 3.0
    assert daemon.restart_delay(fixed, 5, rand=1.0) == pytest.approx(4.5)


def test_delay_has_a_floor_so_a_crashing_daemon_cannot_spin() -> None:
    spin = RetryPolicy(base_secs=0, max_secs=0, jitter=0)
    assert daemon.restart_delay(spin, 1) == daemon.MIN_RESTART_DELAY_SECS
    assert daemon.restart_delay(spin, 0) == 0.0


def test_next_start_counts_from_the_end_of_the_last_run() -> None:
    policy = RetryPolicy(base_secs=1, max_secs=300, jitter=0)
    now = T0 + timedelta(seconds=0.5)
    assert daemon.next_start(policy, [], now=now) == now  # first start: at once
    assert daemon.next_start(policy, [run(1)], now=now) == T0 + timedelta(seconds=1)
    short3 = [run(1), run(1), run(1)]
    assert daemon.next_start(policy, short3, now=now) == T0 + timedelta(seconds=4)
    # After a healthy run: at once. A delay already over: now, never in the past.
    assert daemon.next_start(policy, [run(3600), run(1)], now=now) == now
    later = T0 + timedelta(seconds=30)
    assert daemon.next_start(policy, short3, now=later) == later


def test_daemon_config_drops_task_retries_and_pins() -> None:
    config = JobConfig(command=CommandKind.BASH, script="true", retry=RetryPolicy(max_retries=5, base_secs=2))
    snapshot = daemon.daemon_config(config, "worker-1")
    assert snapshot.retry.max_retries == 0
    assert snapshot.retry.base_secs == 2
    assert snapshot.target.agent_id == "worker-1"
    assert daemon.daemon_config(config, None).target.agent_id is None
    assert config.retry.max_retries == 5  # the job's own config is left alone


def test_pinned_and_is_broadcast() -> None:
    config = JobConfig(
        command=CommandKind.BASH, script="true", target=Target(routing=RoutingPolicy.BROADCAST)
    )
    assert new_tasks.is_broadcast(config)
    pinned = new_tasks.pinned(config, "a1")
    assert pinned.target.agent_id == "a1"
    assert not new_tasks.is_broadcast(pinned)
    assert new_tasks.pinned(config, None) is config
