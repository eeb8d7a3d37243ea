"""Task generation on the leader: every enabled clock schedule's slots become tasks ahead of time.

A cycle takes the enabled cron, interval and once schedules whose cursor (``generated_until``) is less than
half a horizon ahead and plans their slots up to ``horizon_secs`` from now: one task per slot (one per
matching online agent for a broadcast job), inserted ``ON CONFLICT DO NOTHING`` on the unique slot key so
generation is idempotent, with the slots that will not run recorded (``missed``, ``deduplicated``) and the
cursor advanced in the same transaction, fenced by the leader's lease token. Slots reached only after their
time (beyond grace and ``misfire_slack_secs``) go through the misfire policy, a long gap in chunks of
``MISSED_CHUNK``. Each transaction locks the job, then the schedule (the services' order) and checks neither
changed since the schedule was listed. A cycle runs when woken (a schedule change, or this server becoming
leader) and every ``interval_secs`` otherwise; docs/scheduling.md (From schedules to tasks) tells the whole
story.

A flow schedule is not planned ahead: its slots are fired once due, each starting one flow run
(``scheduler.flow_fires``), and the loop wakes up at the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from hetuflow_core.enums import ScheduleStatus, SlotOutcome
from hetuflow_core.job import Job
from hetuflow_core.schedule import Schedule
from hetuflow_server.errors import HetuflowError, NotFound
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.loops import LoopFactory, woken
from hetuflow_server.scheduler import flow_fires
from hetuflow_server.scheduler.leader import Leadership, Tenure
from hetuflow_server.service import new_tasks
from hetuflow_server.triggers._errors import InvalidSchedule
from hetuflow_server.triggers._trigger import fire_times
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS, LateSlots, MisfireRule
from hetuflow_server.triggers.upcoming import schedule_trigger

__all__ = [
    "DEFAULT_HORIZON_SECS",
    "GENERATION_INTERVAL_SECS",
    "MISSED_CHUNK",
    "CycleReport",
    "Generator",
]

logger = logging.getLogger(__name__)

DEFAULT_HORIZON_SECS: Final = 600.0
GENERATION_INTERVAL_SECS: Final = 5.0
"""Longest pause between two cycles without a wake-up (shorter for horizons under 20 s), unless configured:
``scheduler.generation_interval_secs``."""
PAGE_SIZE: Final = 200
"""Schedules listed per query of a cycle."""
MISSED_CHUNK: Final = 1000
"""Missed slots recorded per transaction while streaming through a long gap."""

_FIRE_MARGIN_SECS: Final = 0.005

Clock = Callable[[], datetime]


class CycleReport(msgspec.Struct, kw_only=True):
    """What one cycle did."""

    schedules: int = 0
    """Schedules whose cursor moved (or that expired)."""
    tasks: int = 0
    """Tasks planned, and runs started by flow schedules."""
    missed: int = 0
    deduplicated: int = 0
    expired: int = 0
    lost_lease: bool = False
    """The cycle stopped because this server no longer held the lease."""
    next_flow_fire_at: datetime | None = None
    """The next slot of a flow schedule after this cycle: the loop wakes up then."""


class _Written(msgspec.Struct, kw_only=True, frozen=True):
    """One committed write: the schedule as stored now, and how many tasks it made or found made."""

    schedule: Schedule
    tasks: int
    deduplicated: int


class _LostLease(Exception):
    """The lease moved on: roll the transaction back and end the cycle."""


class _Changed(Exception):
    """The schedule or its job changed since it was listed: leave it to the next cycle."""


class Generator:
    """Materialises the slots of clock schedules as tasks while ``leadership`` says this server leads."""

    def __init__(
        self,
        db: ModelManager,
        leadership: Leadership,
        *,
        horizon_secs: float = DEFAULT_HORIZON_SECS,
        interval_secs: float | None = None,
        misfire_slack_secs: float = MISFIRE_SLACK_SECS,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        if horizon_secs <= 0:
            raise ValueError(f"horizon_secs must be positive, got {horizon_secs}")
        if interval_secs is not None and interval_secs <= 0:
            raise ValueError(f"interval_secs must be positive, got {interval_secs}")
        self._db = db
        self._leadership = leadership
        self._horizon = timedelta(seconds=horizon_secs)
        self._interval_secs = (
            interval_secs if interval_secs is not None else min(GENERATION_INTERVAL_SECS, horizon_secs / 4)
        )
        self._slack_secs = misfire_slack_secs
        self._clock = clock
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        leadership.watch(lambda leading: self.wake() if leading else None)

    @property
    def interval_secs(self) -> float:
        """Longest pause between cycles."""
        return self._interval_secs

    def wake(self) -> None:
        """Run a cycle as soon as possible (a job or schedule changed, or this server became leader)."""
        self._wake.set()

    async def on_notify(self, payload: str) -> None:
        """Listener callback for ``SCHEDULE_CHANNEL``: every change wakes the generator."""
        del payload  # which schedule changed does not matter: a cycle looks at all that need work
        self.wake()

    def loop(self) -> LoopFactory:
        """The background loop: a cycle per wake-up or ``interval_secs``, while this server leads."""

        async def step() -> None:
            report = await self.cycle()
            if report.schedules:
                logger.debug("generation cycle: %s", msgspec.structs.asdict(report))
            if report.next_flow_fire_at is not None:
                self._wake_at(report.next_flow_fire_at)

        return woken(
            self._wake,
            self._interval_secs,
            step,
            name="task generation",
            active=lambda: self._leadership.is_leader,
        )

    def _wake_at(self, moment: datetime) -> None:
        """Run a cycle at ``moment`` (a flow schedule's next slot), replacing any earlier such wake-up."""
        if self._timer is not None:
            self._timer.cancel()
        # A hair late rather than early: a slot is fired once its time has come.
        delay = max((moment - self._clock()).total_seconds(), 0.0) + _FIRE_MARGIN_SECS
        self._timer = asyncio.get_running_loop().call_later(delay, self.wake)

    async def cycle(self) -> CycleReport:
        """One pass over every schedule that needs tasks; does nothing unless this server leads."""
        report = CycleReport()
        tenure = self._leadership.tenure
        if tenure is None:
            return report
        now = self._clock()
        until = now + self._horizon
        refill_before = now + self._horizon / 2
        after_id = None
        while True:
            async with self._db.transaction() as conn:
                page = await bmc.ScheduleBmc.generation_work(
                    conn, until=refill_before, due_until=now, after_id=after_id, limit=PAGE_SIZE
                )
            for schedule in page:
                try:
                    await self._generate(schedule, tenure, now, until, report)
                except _LostLease:
                    logger.warning(
                        "lost the %s lease during a generation cycle",
                        tenure.name,
                        extra={"token": tenure.token},
                    )
                    report.lost_lease = True
                    return report
                except (_Changed, flow_fires.Stale):
                    continue
                except (HetuflowError, InvalidSchedule) as exc:
                    # One bad schedule (or a failed statement) must not stop the others.
                    logger.warning(
                        "generation for schedule %s failed: %s",
                        schedule.id,
                        exc,
                        extra={"schedule_id": str(schedule.id)},
                    )
            if len(page) < PAGE_SIZE:
                return report
            after_id = page[-1].id

    # -- one schedule ----------------------------------------------------------------------------------------

    async def _generate(
        self, schedule: Schedule, tenure: Tenure, now: datetime, until: datetime, report: CycleReport
    ) -> None:
        trigger = schedule_trigger(schedule)
        if trigger is None:  # only clock schedules are listed; a kind change would make it None
            return
        if schedule.flow_id is not None:
            until = now  # a flow's run starts when its slot comes due
            upcoming_fire = trigger.next_fire_after(now)
            if upcoming_fire is not None and (
                report.next_flow_fire_at is None or upcoming_fire < report.next_flow_fire_at
            ):
                report.next_flow_fire_at = upcoming_fire
        rule = self._rule(schedule)
        cutoff = rule.cutoff(now)
        start = schedule.generated_until or schedule.created_at
        # fire_count counts every slot planned so far; a rewound cursor (rule change) may leave some of them
        # ahead of it, to be met again as duplicates: they must not use up max_count twice.
        fired_before = schedule.fire_count
        if trigger.max_count is not None and schedule.generated_until is not None:
            async with self._db.transaction() as conn:
                fired_before -= await bmc.TaskBmc.count_slot_tasks_after(
                    conn, schedule.id, schedule.generated_until
                )
        late = LateSlots(rule.keep)
        missed: list[datetime] = []
        on_time: list[datetime] = []
        slots: Iterator[datetime] = fire_times(trigger, start, until, fired=fired_before)
        consumed = 0  # slots taken from the trigger in this pass
        unwritten = 0  # of those, the ones not committed yet
        last: datetime | None = None
        for slot in slots:
            consumed += 1
            unwritten += 1
            last = slot
            if slot >= cutoff:
                on_time.append(slot)
                continue
            dropped = late.add(slot)
            if dropped is not None:
                missed.append(dropped)
            if len(missed) >= MISSED_CHUNK:
                # Every slot up to the last missed one is decided (the kept ones are all later): commit them.
                flushed = await self._write(
                    schedule, tenure, now, missed=missed, run=[], cursor=missed[-1], fired=len(missed)
                )
                schedule = flushed.schedule
                report.missed += len(missed)
                unwritten -= len(missed)
                missed = []
        exhausted = (trigger.max_count is not None and fired_before + consumed >= trigger.max_count) or (
            trigger.next_fire_after(until) is None
        )
        current = schedule.generated_until or schedule.created_at
        cursor = until if not exhausted else max(last or current, current)
        expire = exhausted and cursor <= now
        if unwritten == 0 and not expire and (cursor == schedule.generated_until or schedule.flow_id):
            # Nothing new: a finished schedule waiting for its last slot to pass, or a flow's next slot.
            return
        run = late.kept + on_time
        written = await self._write(
            schedule, tenure, now, missed=missed, run=run, cursor=cursor, fired=unwritten, expire=expire
        )
        report.schedules += 1
        report.missed += len(missed)
        report.expired += int(written.schedule.status is ScheduleStatus.EXPIRED)
        report.tasks += written.tasks
        report.deduplicated += written.deduplicated

    async def _write(
        self,
        schedule: Schedule,
        tenure: Tenure,
        now: datetime,
        *,
        missed: list[datetime],
        run: list[datetime],
        cursor: datetime,
        fired: int,
        expire: bool = False,
    ) -> _Written:
        """One fenced transaction: tasks for ``run``, records for ``missed`` and duplicates, cursor to
        ``cursor``. Returns the schedule as written (the snapshot the next write of this cycle expects)."""
        rule = self._rule(schedule)
        if schedule.flow_id is not None:
            outcome = await flow_fires.fire(
                self._db,
                schedule,
                tenure,
                missed=[(slot, rule.missed_detail(slot, now)) for slot in missed],
                run=run,
                cursor=cursor,
                fired=fired,
                expire=expire,
            )
            if outcome is None:
                raise _LostLease
            return _Written(schedule=outcome.schedule, tasks=outcome.runs, deduplicated=0)
        async with self._db.transaction() as conn:
            job = await self._lock(conn, schedule, tenure)
            # A broadcast job's slot is one task per matching online agent; the slot counts once all the same.
            slot_tasks = await new_tasks.fan_out(
                conn,
                [
                    new_tasks.new_task(
                        job.id,
                        job.config,
                        origin=bmc.TaskOrigin.SCHEDULE,
                        scheduled_at=slot,
                        parameters=schedule.parameters,
                        schedule_id=schedule.id,
                    )
                    for slot in run
                ],
            )
            inserted = await bmc.TaskBmc.insert_many(conn, slot_tasks, by=None)
            made = {task.scheduled_at for task in inserted}
            existing = await bmc.TaskBmc.slot_tasks_at(conn, schedule.id, [s for s in run if s not in made])
            records = [
                bmc.NewSlot(
                    schedule_id=schedule.id,
                    scheduled_at=slot,
                    outcome=SlotOutcome.MISSED,
                    detail=rule.missed_detail(slot, now),
                )
                for slot in missed
            ]
            records += [
                bmc.NewSlot(
                    schedule_id=schedule.id,
                    scheduled_at=slot,
                    outcome=SlotOutcome.DEDUPLICATED,
                    task_id=task_id,
                    detail=f"already planned as task {task_id}; this generation of the slot was dropped",
                )
                for slot, task_id in sorted(existing.items())
            ]
            await bmc.SlotBmc.record_many(conn, records)
            written = await bmc.ScheduleBmc.advance(
                conn,
                schedule.id,
                generated_until=cursor,
                fired=fired - len(existing),  # a duplicate was counted by whoever planned it first
                expire=expire,
                lease_name=tenure.name,
                holder=tenure.holder,
                token=tenure.token,
            )
            if written is None:
                raise _LostLease
            if inserted:
                await notify.work_added(conn)
        if expire:
            logger.info("schedule %s expired", schedule.id, extra={"schedule_id": str(schedule.id)})
        return _Written(schedule=written, tasks=len(inserted), deduplicated=len(existing))

    def _rule(self, schedule: Schedule) -> MisfireRule:
        """The schedule's misfire rule with this server's slack (the start deadline is the dispatcher's)."""
        return MisfireRule(
            policy=schedule.misfire_policy,
            grace_secs=schedule.misfire_grace_secs,
            max_runs=schedule.misfire_max_runs,
            slack_secs=self._slack_secs,
        )

    async def _lock(self, conn: db.Connection, schedule: Schedule, tenure: Tenure) -> Job:
        """Fence, then lock the job and the schedule (in the services' order) and check nothing changed."""
        if not await bmc.LeaseBmc.hold(conn, tenure.name, holder=tenure.holder, token=tenure.token):
            raise _LostLease
        assert schedule.job_id is not None, "flow schedules fire through flow_fires"
        try:
            job = await bmc.JobBmc.get(conn, schedule.job_id, lock=True)
            current = await bmc.ScheduleBmc.get(conn, schedule.id, lock=True)
        except NotFound:
            raise _Changed from None
        if flow_fires.changed_since(schedule, current, target=job.status):
            raise _Changed
        return job
