"""DaemonBmc: statements on the tasks of daemon schedules (``sched_task`` rows of origin ``daemon``).

The daemon supervisor lists the runs that should exist and do not (``vacancies``) and reads a schedule's
latest runs to pick the restart delay (``recent_runs``); the job and schedule services lock the live daemon
tasks they stop (``lock_live``).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import TaskStatus
from hetuflow_core.task import Task
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import many
from hetuflow_server.infra.sql import query

__all__ = ["DaemonBmc", "DaemonRun", "DaemonVacancy"]

_VACANCIES = query("list_daemon_vacancies")
_RUNS = query("list_daemon_runs")
_LOCK_LIVE = query("lock_live_daemon_tasks")


class DaemonVacancy(msgspec.Struct, kw_only=True, frozen=True):
    """A daemon run that should be live and is not: its schedule, job and pinned agent (None: any agent)."""

    schedule_id: UUID
    job_id: UUID
    pin: str | None


class DaemonRun(msgspec.Struct, kw_only=True, frozen=True):
    """One past or present run of a daemon: when it was due, when its process started and when it ended."""

    task_id: UUID
    status: TaskStatus
    scheduled_at: datetime
    completed_at: datetime | None
    started_at: datetime | None


class DaemonBmc:
    """Tasks of daemon schedules."""

    @staticmethod
    async def vacancies(conn: db.Connection, *, limit: int) -> list[DaemonVacancy]:
        """Up to ``limit`` daemon runs that should be live and have no live task, by schedule and pin."""
        return many(await db.fetch_all(conn, _VACANCIES, {"limit": limit}), DaemonVacancy)

    @staticmethod
    async def recent_runs(
        conn: db.Connection, schedule_id: UUID, *, pin: str | None, limit: int
    ) -> list[DaemonRun]:
        """The latest ``limit`` runs of the schedule pinned to ``pin`` (None: unpinned), newest first."""
        params = {"schedule_id": schedule_id, "pin": pin or "", "limit": limit}
        return many(await db.fetch_all(conn, _RUNS, params), DaemonRun)

    @staticmethod
    async def lock_live(
        conn: db.Connection, *, schedule_id: UUID | None = None, job_id: UUID | None = None
    ) -> list[Task]:
        """The live daemon tasks of ``schedule_id`` or of ``job_id``, locked FOR UPDATE in id order."""
        if schedule_id is None and job_id is None:
            return []
        params = {"schedule_id": schedule_id, "job_id": job_id}
        return many(await db.fetch_all(conn, _LOCK_LIVE, params), Task)
