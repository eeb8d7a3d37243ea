"""Daemon schedules on the leader: keep one run of each daemon alive, restarting it with backoff when it ends.

An enabled daemon schedule wants exactly one live task (pending, dispatched, running or waiting for a retry),
or one per matching online agent for a ``broadcast`` job. Each cycle of the `DaemonSupervisor` creates the
missing runs (origin ``daemon``), due after the restart delay: immediate after a healthy run (one whose
process lived `HEALTHY_RUN_SECS`), else the job's retry backoff for the n-th short run in a row, never less
than `MIN_RESTART_DELAY_SECS`. Every restart is a new task, so a run's own config gets ``max_retries = 0``.
Disabling or deleting the schedule or job is what stops a daemon (the services cancel its live run).

Each task is created in a transaction fenced by the leader's lease that locks the job, then the schedule (the
services' order), and inserts ``ON CONFLICT DO NOTHING`` on the unique index of live daemon tasks: two
leaders, or a leader racing a disable, never leave two live runs. See docs/architecture.md (Daemon runs).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from hetuflow_core.enums import JobStatus, RoutingPolicy, ScheduleStatus
from hetuflow_core.job import JobConfig, RetryPolicy
from hetuflow_server.errors import HetuflowError, NotFound
from hetuflow_server.infra import bmc, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.loops import LoopFactory, woken
from hetuflow_server.scheduler.leader import Leadership, Tenure
from hetuflow_server.service import new_tasks

__all__ = [
    "DAEMON_INTERVAL_SECS",
    "HEALTHY_RUN_SECS",
    "MIN_RESTART_DELAY_SECS",
    "DaemonSupervisor",
    "daemon_config",
    "next_start",
    "restart_delay",
    "unhealthy_streak",
]

logger = logging.getLogger(__name__)

DAEMON_INTERVAL_SECS: Final = 5.0
"""Longest pause between two supervisor cycles without a wake-up."""
HEALTHY_RUN_SECS: Final = 60.0
"""A run whose process lived this long was healthy: the restart delay starts from zero again."""
MIN_RESTART_DELAY_SECS: Final = 1.0
"""Floor of the delay after a short run, so a daemon that exits at once (``base_secs`` 0) cannot spin."""
HISTORY_RUNS: Final = 32
"""Runs read back to count the short ones; past this many the delay is at ``max_secs`` anyway."""
PAGE_SIZE: Final = 200
"""Vacancies filled per cycle (a cycle that fills a whole page runs again at once)."""

Clock = Callable[[], datetime]


# -- the restart rule (pure) ---------------------------------------------------------------------------------


def _healthy(run: bmc.DaemonRun, healthy_secs: float) -> bool:
    if run.started_at is None or run.completed_at is None:
        return False
    return (run.completed_at - run.started_at).total_seconds() >= healthy_secs


def unhealthy_streak(runs: Sequence[bmc.DaemonRun], *, healthy_secs: float = HEALTHY_RUN_SECS) -> int:
    """How many of the latest ``runs`` (newest first) in a row were short: their process lived less than
    ``healthy_secs``, or never started."""
    streak = 0
    for run in runs:
        if _healthy(run, healthy_secs):
            break
        streak += 1
    return streak


def restart_delay(policy: RetryPolicy, streak: int, rand: float = 0.0) -> float:
    """Seconds to wait before the next start after ``streak`` short runs in a row (0: start now)."""
    if streak <= 0:
        return 0.0
    return max(policy.delay_secs(streak, rand), MIN_RESTART_DELAY_SECS)


def next_start(
    policy: RetryPolicy,
    runs: Sequence[bmc.DaemonRun],
    *,
    now: datetime,
    healthy_secs: float = HEALTHY_RUN_SECS,
    rand: float = 0.0,
) -> datetime:
    """When the next run of a daemon is due, given its latest ``runs`` (newest first, all ended)."""
    if not runs:
        return now
    delay = restart_delay(policy, unhealthy_streak(runs, healthy_secs=healthy_secs), rand)
    ended = runs[0].completed_at or now
    return max(now, ended + timedelta(seconds=delay))


def daemon_config(config: JobConfig, pin: str | None) -> JobConfig:
    """The config snapshot of a daemon run: the job's, pinned to ``pin``, without task-level retries (every
    restart is a new run)."""
    config = new_tasks.pinned(config, pin)
    if config.retry.max_retries == 0:
        return config
    return msgspec.structs.replace(config, retry=msgspec.structs.replace(config.retry, max_retries=0))


def _wanted_pin(config: JobConfig, pin: str | None) -> bool:
    """True when a run pinned to ``pin`` is still one the job's current target asks for."""
    if config.target.agent_id is not None:
        return pin == config.target.agent_id
    if config.target.routing is RoutingPolicy.BROADCAST:
        return pin is not None
    return pin is None


# -- the supervisor ------------------------------------------------------------------------------------------


class _LostLease(Exception):
    """The lease moved on: roll the transaction back and end the cycle."""


class DaemonSupervisor:
    """Starts the missing runs of daemon schedules while ``leadership`` says this server leads."""

    def __init__(
        self,
        db: ModelManager,
        leadership: Leadership,
        *,
        interval_secs: float = DAEMON_INTERVAL_SECS,
        healthy_secs: float = HEALTHY_RUN_SECS,
        rand: Callable[[], float] = random.random,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._leadership = leadership
        self._interval_secs = interval_secs
        self._healthy_secs = healthy_secs
        self._rand = rand
        self._clock = clock
        self._wake = asyncio.Event()
        leadership.watch(lambda leading: self.wake() if leading else None)

    def wake(self) -> None:
        """Run a cycle as soon as possible."""
        self._wake.set()

    async def on_notify(self, payload: str) -> None:
        """Listener callback (work and schedule channels): each may mean a daemon run ended or changed,
        except the notice of triggered tasks (a busy API sends one per request) and that of attempts that
        ended no daemon run (a busy fleet sends one per batch of reports)."""
        if payload not in (notify.MANUAL_TASKS, notify.ATTEMPTS_ENDED):  # else which change does not matter
            self.wake()

    def loop(self) -> LoopFactory:
        """The background loop: a cycle per wake-up or ``interval_secs``, while this server leads."""

        async def step() -> None:
            if await self.cycle() >= PAGE_SIZE:
                self.wake()  # a full page: more may be waiting

        return woken(
            self._wake,
            self._interval_secs,
            step,
            name="daemon supervisor",
            active=lambda: self._leadership.is_leader,
        )

    async def cycle(self) -> int:
        """Create a task for every missing daemon run (up to a page); how many were created. Does nothing
        unless this server leads."""
        tenure = self._leadership.tenure
        if tenure is None:
            return 0
        async with self._db.transaction() as conn:
            vacancies = await bmc.ScheduleBmc.daemon_vacancies(conn, limit=PAGE_SIZE)
        started = 0
        for vacancy in vacancies:
            try:
                started += await self._start(vacancy, tenure)
            except _LostLease:
                logger.warning("lost the %s lease while starting daemons", tenure.name)
                break
            except HetuflowError as exc:  # one failing daemon must not keep the others down
                logger.warning(
                    "could not start daemon schedule %s: %s",
                    vacancy.schedule_id,
                    exc,
                    extra={"schedule_id": str(vacancy.schedule_id)},
                )
        return started

    async def _start(self, vacancy: bmc.DaemonVacancy, tenure: Tenure) -> int:
        async with self._db.transaction() as conn:
            if not await bmc.LeaseBmc.hold(conn, tenure.name, holder=tenure.holder, token=tenure.token):
                raise _LostLease
            try:
                job = await bmc.JobBmc.get(conn, vacancy.job_id, lock=True)
                schedule = await bmc.ScheduleBmc.get(conn, vacancy.schedule_id, lock=True)
            except NotFound:
                return 0  # deleted meanwhile
            if (
                job.status is not JobStatus.ENABLED
                or schedule.status is not ScheduleStatus.ENABLED
                or not _wanted_pin(job.config, vacancy.pin)
            ):
                return 0  # changed since the vacancy was listed; the next cycle sees it as it is now
            runs = await bmc.TaskBmc.daemon_runs(conn, schedule.id, pin=vacancy.pin, limit=HISTORY_RUNS)
            config = daemon_config(job.config, vacancy.pin)
            due = next_start(
                config.retry, runs, now=self._clock(), healthy_secs=self._healthy_secs, rand=self._rand()
            )
            task = new_tasks.new_task(
                job.id,
                config,
                origin=bmc.TaskOrigin.DAEMON,
                scheduled_at=due,
                parameters=schedule.parameters,
                schedule_id=schedule.id,
            )
            created = await bmc.TaskBmc.insert_many(conn, [task], by=None)
            if created:
                await notify.work_added(conn)
        if created:
            logger.info(
                "daemon schedule %s%s: next run due at %s",
                schedule.id,
                f" on agent {vacancy.pin}" if vacancy.pin else "",
                due.isoformat(),
                extra={"schedule_id": str(schedule.id), "task_id": str(task.id)},
            )
        return len(created)
