"""JobService: create, read, change, enable/disable, delete and trigger jobs.

Disabling a job stops its schedules from producing work: the not-yet-dispatched future tasks its schedules
already generated are removed and the schedules' generation cursors rewound, so enabling it again generates
from then on (the schedules' misfire policy decides about the gap). Tasks created by hand (trigger, events)
are explicit requests and stay. Deleting a job is a soft delete: it frees the name, disables the job and its
schedules, removes the future scheduled tasks and cancels every task of it that is not on an agent yet
(pending or waiting for a retry); tasks already dispatched or running finish, and the history stays readable.
Daemons are the exception: disabling or deleting a job cancels the live runs of its daemon schedules,
running or not (``service._daemons``). A trigger of a ``broadcast`` job makes one task per
matching online agent (``service.new_tasks``).

A trigger of any other job is one statement (``TaskBmc.insert_triggered``): the job's row read under a share
lock, every task inserted and the dispatchers woken, committed on its own, however many tasks it makes.

Secret env entries (``config.secret_env``) are write-only: readers see ``SECRET_MASK`` in their place, so an
update that sends the mask back for an entry stored as secret keeps the stored value (and the entry secret).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.enums import CommandKind, JobStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import SECRET_MASK, Job, JobConfig, JobCreate, JobUpdate
from hetuflow_core.task import TaskTrigger, TriggerResult
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service import new_tasks
from hetuflow_server.service._daemons import stop_daemons
from hetuflow_server.service._flows import settle_flow_runs
from hetuflow_server.service._paging import DEFAULT_LIMIT, decode_id_cursor, read_page
from hetuflow_server.service._validation import invalid, revalidate

__all__ = ["MAX_BROADCAST_TASKS", "JobService", "validate_job_config"]

MAX_BROADCAST_TASKS: Final = 100_000
"""Most tasks one trigger of a broadcast job may make (its runs times the matching agents)."""

# What the agent's executor accepts: a script body is written to a file it runs (script.sh, script.py run
# by python or `uv run`, script.js, Main.java as single-file source); npx and cargo take a command line only.
_NEEDS_ARGS = frozenset({CommandKind.NPX, CommandKind.CARGO})
_TAKES_SCRIPT = frozenset(
    {CommandKind.BASH, CommandKind.PYTHON, CommandKind.UV, CommandKind.NODE, CommandKind.JAVA}
)


def validate_job_config(config: JobConfig, path: str = "$.config") -> JobConfig:
    """Check what the types cannot: the command has something to run, and the retry bounds make sense."""
    config = revalidate(config, JobConfig)
    if config.command in _TAKES_SCRIPT and config.script is None and not config.args:
        raise invalid(f"{path}.script", f"a {config.command} job needs a script or args")
    if config.command in _NEEDS_ARGS and not config.args:
        raise invalid(f"{path}.args", f"a {config.command} job needs args")
    if config.script is not None and config.command not in _TAKES_SCRIPT:
        raise invalid(f"{path}.script", f"{config.command} jobs take args, not a script")
    if config.retry.max_secs < config.retry.base_secs:
        raise invalid(f"{path}.retry.max_secs", "must not be smaller than base_secs")
    for index, name in enumerate(config.secret_env or ()):
        if name not in config.env:
            raise invalid(f"{path}.secret_env[{index}]", f"{name!r} is not a key of env")
    return config


def keep_secrets(new: JobConfig, stored: JobConfig) -> JobConfig:
    """``new`` with every env value that is the mask of an entry ``stored`` holds as secret replaced by the
    stored value, that entry staying secret: a client sends back what it read."""
    stored_secret = stored.secret_names
    kept = {
        name
        for name, value in new.env.items()
        if value == SECRET_MASK and name in stored_secret and name in stored.env
    }
    if not kept:
        return new
    env = {name: stored.env[name] if name in kept else value for name, value in new.env.items()}
    named = list(new.secret_env or ())
    secret = named + sorted(kept - set(named))
    return msgspec.structs.replace(new, env=env, secret_env=secret)


class JobService:
    """Jobs: what to run, where and under which limits."""

    def __init__(self, db: ModelManager, *, notification_targets: frozenset[str] | None = None) -> None:
        self._db = db
        self._targets = notification_targets

    def _check_targets(self, config: JobConfig) -> None:
        """Every notification rule names a target this server knows (None: no targets to check against)."""
        if self._targets is None:
            return
        for index, rule in enumerate(config.notify):
            if rule.target not in self._targets:
                known = ", ".join(sorted(self._targets)) or "none"
                raise invalid(
                    f"$.config.notify[{index}].target",
                    f"no notification target {rule.target!r} (known: {known})",
                )

    async def create(self, data: JobCreate, *, by: str | None = None) -> Job:
        """Store a new job; Conflict when a live job of that namespace already has the name."""
        data = revalidate(data, JobCreate)
        config = validate_job_config(data.config)
        self._check_targets(config)
        async with self._db.transaction() as conn:
            job = await bmc.JobBmc.insert(
                conn,
                job_id=uuid7(),
                namespace=data.namespace,
                name=data.name,
                description=data.description,
                status=data.status,
                config=config,
                by=by,
            )
            await notify.schedules_changed(conn, job_id=job.id)
        return job

    async def get(self, job_id: UUID) -> Job:
        """The job, or NotFound (also for deleted jobs)."""
        async with self._db.transaction() as conn:
            return await bmc.JobBmc.get(conn, job_id)

    async def list(
        self, *, namespace: str | None = None, cursor: str | None = None, limit: int = DEFAULT_LIMIT
    ) -> Page[Job]:
        """A page of live jobs in creation order, optionally of one namespace."""
        return await read_page(
            self._db,
            cursor,
            limit,
            decode=decode_id_cursor,
            fetch=lambda conn, after, n: bmc.JobBmc.select_page(
                conn, namespace=namespace, after_id=after, limit=n
            ),
            key=lambda job: (job.id,),
        )

    async def update(self, job_id: UUID, patch: JobUpdate, *, by: str | None = None) -> Job:
        """Change the given fields (PATCH); the config is replaced as a whole when given."""
        patch = revalidate(patch, JobUpdate)
        config = None if patch.config is msgspec.UNSET else validate_job_config(patch.config)
        if config is not None:
            self._check_targets(config)
        async with self._db.transaction() as conn:
            job = await bmc.JobBmc.get(conn, job_id, lock=True)
            status = job.status if patch.status is msgspec.UNSET else patch.status
            if status is JobStatus.DISABLED and job.status is JobStatus.ENABLED:
                await _unplan(conn, job_id)
            updated = await bmc.JobBmc.update(
                conn,
                job_id,
                name=job.name if patch.name is msgspec.UNSET else patch.name,
                description=job.description if patch.description is msgspec.UNSET else patch.description,
                status=status,
                config=job.config if config is None else keep_secrets(config, job.config),
                by=by,
            )
            await notify.schedules_changed(conn, job_id=job_id)
        return updated

    async def enable(self, job_id: UUID, *, by: str | None = None) -> Job:
        """Let the job's schedules produce work again (no-op when already enabled)."""
        return await self.update(job_id, JobUpdate(status=JobStatus.ENABLED), by=by)

    async def disable(self, job_id: UUID, *, by: str | None = None) -> Job:
        """Stop the job's schedules and remove their not-yet-dispatched future tasks (no-op when disabled)."""
        return await self.update(job_id, JobUpdate(status=JobStatus.DISABLED), by=by)

    async def delete(self, job_id: UUID, *, by: str | None = None) -> None:
        """Soft-delete the job (see the module docstring for what happens to its tasks and schedules)."""
        async with self._db.transaction() as conn:
            await bmc.JobBmc.get(conn, job_id, lock=True)
            await bmc.TaskBmc.delete_future_of_job(conn, job_id)
            await bmc.ScheduleBmc.disable_job(conn, job_id)
            cancelled = await bmc.TaskBmc.cancel_open_of_job(conn, job_id, reason="job deleted")
            await stop_daemons(conn, job_id=job_id, reason="job deleted")
            # Flow runs waiting for a step of this job skip what comes after it and end.
            await settle_flow_runs(conn, cancelled)
            await bmc.JobBmc.soft_delete(conn, job_id, by=by)
            await notify.schedules_changed(conn, job_id=job_id)

    async def trigger(self, job_id: UUID, trigger: TaskTrigger, *, by: str | None = None) -> TriggerResult:
        """Create tasks of the job, due now or at ``scheduled_at``: one, ``count`` alike, or one per entry of
        ``runs`` (its fields override the trigger's), all in one transaction.

        Works for disabled jobs too (disabled only silences schedules); the tasks get the job's current
        config. A broadcast job gets one task per run and matching online agent (one unpinned task per run
        when none matches).
        """
        trigger = revalidate(trigger, TaskTrigger)
        runs = _manual_runs(trigger)
        async with self._db.autocommit() as conn:
            made = await bmc.TaskBmc.insert_triggered(
                conn, job_id, runs, by=by, channel=notify.WORK_CHANNEL, payload=notify.MANUAL_TASKS
            )
        if made:
            return TriggerResult(task_ids=[run.id for run in runs])
        path = "$.count" if trigger.runs is msgspec.UNSET else "$.runs"
        return await self._trigger_broadcast(job_id, runs, by=by, path=path)

    async def _trigger_broadcast(
        self, job_id: UUID, runs: Sequence[bmc.ManualRun], *, by: str | None, path: str
    ) -> TriggerResult:
        async with self._db.transaction() as conn:
            # Locked FOR NO KEY UPDATE: a concurrent delete waits for us, so it cancels these tasks instead of
            # missing them (and the job may have changed since the first look: whatever it is now counts).
            job = await bmc.JobBmc.get(conn, job_id, lock=True)
            tasks = [
                new_tasks.new_task(
                    job.id,
                    job.config,
                    origin=bmc.TaskOrigin.MANUAL,
                    scheduled_at=run.scheduled_at,
                    parameters=run.parameters,
                    priority=run.priority,
                )
                for run in runs
            ]
            if new_tasks.is_broadcast(job.config):
                agents = await new_tasks.matching_agents(conn, job.config)
                if len(tasks) * len(agents) > MAX_BROADCAST_TASKS:
                    raise invalid(
                        path,
                        f"{len(tasks)} runs on {len(agents)} agents would make more than"
                        f" {MAX_BROADCAST_TASKS} tasks",
                    )
                tasks = [copy for task in tasks for copy in new_tasks.spread(task, agents)]
            created = await bmc.TaskBmc.insert_many(conn, tasks, by=by)
            await notify.work_added(conn)
        return TriggerResult(task_ids=[t.id for t in created])


def _manual_runs(trigger: TaskTrigger) -> list[bmc.ManualRun]:
    """The tasks ``trigger`` asks for, each with a fresh id; InvalidInput for a time without an offset or for
    ``count`` beside ``runs``."""
    now = datetime.now(UTC)
    default_at = _aware(trigger.scheduled_at, "$.scheduled_at") or now
    if trigger.runs is msgspec.UNSET:
        count = 1 if trigger.count is msgspec.UNSET else trigger.count
        return [
            bmc.ManualRun(
                id=uuid7(), scheduled_at=default_at, priority=trigger.priority, parameters=trigger.parameters
            )
            for _ in range(count)
        ]
    if trigger.count is not msgspec.UNSET:
        raise invalid("$.count", "give count or runs, not both")
    runs: list[bmc.ManualRun] = []
    for index, run in enumerate(trigger.runs):
        at = default_at
        if run.scheduled_at is not msgspec.UNSET:
            at = _aware(run.scheduled_at, f"$.runs[{index}].scheduled_at") or now
        runs.append(
            bmc.ManualRun(
                id=uuid7(),
                scheduled_at=at,
                priority=trigger.priority if run.priority is msgspec.UNSET else run.priority,
                parameters=trigger.parameters if run.parameters is msgspec.UNSET else run.parameters,
            )
        )
    return runs


def _aware(at: datetime | None, path: str) -> datetime | None:
    if at is None:
        return None
    if at.tzinfo is None:
        raise invalid(path, "needs a UTC offset")
    try:
        at.astimezone(UTC)
    except OverflowError:
        # Year 1 at a positive offset is 1 BC in UTC: the database would store it, and never hand it back.
        raise invalid(path, "is a date or time outside years 1 to 9999 in UTC") from None
    return at


async def _unplan(conn: db.Connection, job_id: UUID) -> None:
    """Remove the job's future scheduled tasks, rewind its schedules' cursors to now and stop its daemons."""
    await bmc.TaskBmc.delete_future_of_job(conn, job_id)
    await bmc.ScheduleBmc.rewind_job(conn, job_id)
    await stop_daemons(conn, job_id=job_id, reason="job disabled")
