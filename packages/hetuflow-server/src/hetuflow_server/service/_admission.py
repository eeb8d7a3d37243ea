"""Admission of due schedule slots at dispatch: misfire and overlap policies, applied where they are exact.

Just before the dispatcher creates attempts it hands the chosen tasks to ``admit`` in the same transaction
(the claim holds their row locks). Only the first attempt of a schedule slot is judged; manual, event and flow
tasks and retries pass. A slot past its schedule's start deadline is skipped (slot ``missed``). A slot planned
and watched in time that only waited for a free agent starts, however late. Any other late slot runs only if
its misfire policy keeps it (else ``skipped``, slot ``missed``); a daemon's restart is never late. For
``forbid`` and ``replace`` jobs a slot due while an earlier run of its schedule (and pin) still goes is
skipped (``skipped_overlap``) or that run is cancelled as the API cancels a task; such slots are judged only
when due and held back until then. Slots that go ahead are recorded ``ran``. One NOTIFY tells the dispatchers
that capacity meant for skipped slots is free again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from hetuflow_core.enums import ConcurrencyPolicy, ScheduleKind, SlotOutcome, TaskStatus
from hetuflow_core.task import Task
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS, MisfireRule, Verdict
from hetuflow_server.triggers.overlap import RunRef, plan_overlap

__all__ = ["admit", "is_slot_start"]


def is_slot_start(task: Task) -> bool:
    """True for the first attempt of a schedule slot: the tasks whose start the policies judge."""
    return task.schedule_id is not None and task.attempt == 0


async def admit(
    conn: db.Connection, tasks: Sequence[Task], *, now: datetime, slack_secs: float = MISFIRE_SLACK_SECS
) -> list[Task]:
    """The tasks among ``tasks`` (claimed, about to be dispatched at ``now``) that may start, in input order.

    The others are dealt with in ``conn``'s transaction: skipped as missed or overlapping (with their slot
    records), or held back until due. ``slack_secs`` is the lateness forgiven on top of every grace period and
    start deadline (``scheduler.misfire_slack_secs``).
    """
    slots = [task for task in tasks if is_slot_start(task)]
    if not slots:
        return list(tasks)
    missed = await _misfires(conn, slots, now, slack_secs)
    held: set[UUID] = set()
    skipped: dict[UUID, str] = {}
    cancels: list[bmc.LiveRun] = []
    # Runs are judged per schedule and pin: the copies of a broadcast slot on different agents never overlap.
    guarded: dict[tuple[UUID, str | None], list[Task]] = defaultdict(list)
    for task in slots:
        if task.id in missed or task.config.concurrency is ConcurrencyPolicy.ALLOW:
            continue
        if task.scheduled_at > now:
            held.add(task.id)  # judged when due, never ahead of time
        else:
            guarded[_schedule_id(task), task.config.target.agent_id].append(task)
    if guarded:
        live: dict[tuple[UUID, str | None], list[bmc.LiveRun]] = defaultdict(list)
        for run in await bmc.TaskBmc.live_runs(conn, sorted({key[0] for key in guarded})):
            live[run.schedule_id, run.pin].append(run)
        for key, due in guarded.items():
            runs = {run.task_id: run for run in live[key]}
            newest = max(due, key=lambda task: task.scheduled_at)  # the job's latest word on concurrency
            plan = plan_overlap(
                newest.config.concurrency,
                [RunRef(task_id=task.id, scheduled_at=task.scheduled_at) for task in due],
                [RunRef(task_id=run.task_id, scheduled_at=run.scheduled_at) for run in runs.values()],
            )
            skipped.update((skip.task_id, skip.detail) for skip in plan.skip)
            cancels.extend(runs[ref.task_id] for ref in plan.cancel)
            if plan.cancel:
                winner = plan.run[0]
                reason = f"replaced by the slot at {winner.scheduled_at.isoformat()} (task {winner.task_id})"
                await _cancel(conn, [runs[ref.task_id] for ref in plan.cancel], reason)

    by_id = {task.id: task for task in slots}
    await _skip(conn, by_id, missed, SlotOutcome.MISSED)
    await _skip(conn, by_id, skipped, SlotOutcome.SKIPPED_OVERLAP)
    refused = missed.keys() | skipped.keys() | held
    starting = [task for task in slots if task.id not in refused]
    await bmc.SlotBmc.record_many(
        conn,
        [
            bmc.NewSlot(
                schedule_id=_schedule_id(task),
                scheduled_at=task.scheduled_at,
                outcome=SlotOutcome.RAN,
                task_id=task.id,
            )
            for task in starting
        ],
    )
    if missed or skipped or cancels:
        await notify.work_added(conn)
    return [task for task in tasks if task.id not in refused]


async def _misfires(
    conn: db.Connection, slots: Sequence[Task], now: datetime, slack_secs: float
) -> dict[UUID, str]:
    """The slots that do not run: past their start deadline, or late and not kept by the misfire policy; with
    why."""
    settings = await bmc.ScheduleBmc.misfire_settings(conn, [_schedule_id(task) for task in slots])
    rules = {
        schedule_id: MisfireRule(
            policy=s.misfire_policy,
            grace_secs=s.misfire_grace_secs,
            max_runs=s.misfire_max_runs,
            start_deadline_secs=s.start_deadline_secs,
            slack_secs=slack_secs,
        )
        for schedule_id, s in settings.items()
    }
    daemons = {schedule_id for schedule_id, s in settings.items() if s.kind is ScheduleKind.DAEMON}
    judged = [
        (task, rules.get(_schedule_id(task), MisfireRule(slack_secs=slack_secs)))
        for task in slots
        if _schedule_id(task) not in daemons
    ]
    # Whether the scheduler was down since a slot's time matters only for late slots: on-time dispatch (the
    # usual case) needs no extra statement.
    any_late = any(rule.is_late(task.scheduled_at, now) for task, rule in judged)
    up_since = await bmc.UptimeBmc.up_since(conn) if any_late else now
    missed: dict[UUID, str] = {}
    late: list[tuple[Task, MisfireRule]] = []
    for task, rule in judged:
        verdict = rule.judge(task.scheduled_at, planned_at=task.created_at, up_since=up_since, now=now)
        if verdict is Verdict.PAST_DEADLINE:
            missed[task.id] = rule.deadline_detail(task.scheduled_at, now)
        elif verdict is Verdict.LATE:
            late.append((task, rule))
    counts = await bmc.TaskBmc.later_late_counts(
        conn,
        [
            bmc.LateSlot(
                task_id=task.id,
                schedule_id=_schedule_id(task),
                scheduled_at=task.scheduled_at,
                cutoff=rule.cutoff(now),
                unwatched_before=rule.unwatched_before(up_since),
                tolerance_secs=rule.tolerance.total_seconds(),
                pin=task.config.target.agent_id,
            )
            for task, rule in late
            if rule.keep > 0
        ],
    )
    missed.update(
        (task.id, rule.missed_detail(task.scheduled_at, now))
        for task, rule in late
        if not rule.runs_late(counts.get(task.id, 0))
    )
    return missed


async def _skip(
    conn: db.Connection, tasks: dict[UUID, Task], reasons: dict[UUID, str], outcome: SlotOutcome
) -> None:
    """pending → skipped for the refused slots, and their slot records (replacing a ``deduplicated`` one)."""
    if not reasons:
        return
    changes = [
        bmc.TaskChange(task_id=task_id, status=TaskStatus.SKIPPED, error=reason)
        for task_id, reason in reasons.items()
    ]
    await bmc.TaskBmc.transition_many(conn, changes)
    await bmc.SlotBmc.record_many(
        conn,
        [
            bmc.NewSlot(
                schedule_id=_schedule_id(tasks[task_id]),
                scheduled_at=tasks[task_id].scheduled_at,
                outcome=outcome,
                task_id=task_id,
                detail=reason,
            )
            for task_id, reason in reasons.items()
        ],
        overwrite=True,
    )


async def _cancel(conn: db.Connection, runs: Sequence[bmc.LiveRun], reason: str) -> None:
    """Cancel live runs as the API does: the task ends ``cancelled`` now (only if ``run`` is still its current
    attempt), and the agent holding the attempt is told to stop it."""
    changes = [
        bmc.TaskChange(
            task_id=run.task_id, status=TaskStatus.CANCELLED, instance_id=run.instance_id, error=reason
        )
        for run in runs
    ]
    for task in await bmc.TaskBmc.transition_many(conn, changes):
        if task.instance_id is None or task.agent_id is None:
            continue
        await notify.cancel_on_agent(
            conn, agent_id=task.agent_id, instance_id=task.instance_id, reason=reason
        )


def _schedule_id(task: Task) -> UUID:
    assert task.schedule_id is not None, "only slot tasks are judged"
    return task.schedule_id
