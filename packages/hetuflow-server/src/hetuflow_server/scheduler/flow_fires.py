"""Fires of flow schedules: each due slot starts one flow run, under the flow's overlap policy.

The generator hands over a flow schedule's slots once they are due (never ahead of time: whether an earlier
run still goes is only known then), already sorted by the misfire policy into slots to run and slots
``missed``. One transaction, fenced by the leader's lease token, locks the flow and the schedule (the
services' order), checks neither changed since the schedule was listed, applies the flow's ``concurrency``
to the due slots and the schedule's runs still going (``triggers.overlap``: ``forbid`` records the slot
``skipped_overlap``, ``replace`` cancels the running run as ``POST …/runs/{id}/cancel`` does), starts a run
per slot that goes ahead, records every slot (``ran`` naming its run) and moves the cursor. A run that cannot
start (a step's job was deleted) leaves its slot ``missed`` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from hetuflow_core.enums import JobStatus, ScheduleStatus, SlotOutcome
from hetuflow_core.flow import Flow
from hetuflow_core.ids import uuid7
from hetuflow_core.schedule import Schedule
from hetuflow_server.errors import Conflict, NotFound
from hetuflow_server.infra import bmc, db
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.scheduler.leader import Tenure
from hetuflow_server.service import _flow_runs
from hetuflow_server.triggers.overlap import RunRef, Skip, plan_overlap

__all__ = ["Fired", "Stale", "changed_since", "fire"]


class Fired(msgspec.Struct, kw_only=True, frozen=True):
    """One committed fire: the schedule as stored now, and how many runs it started."""

    schedule: Schedule
    runs: int


class Stale(Exception):
    """The schedule or its flow changed since the schedule was listed: leave it to the next cycle."""


async def fire(
    database: ModelManager,
    schedule: Schedule,
    tenure: Tenure,
    *,
    missed: Sequence[tuple[datetime, str]],
    run: Sequence[datetime],
    cursor: datetime,
    fired: int,
    expire: bool,
) -> Fired | None:
    """Start a run for each slot of ``run`` that the overlap policy lets go, record ``missed`` (slot, why),
    and move the cursor to ``cursor`` counting ``fired`` slots; None (nothing written) when the lease moved
    on."""
    async with database.transaction() as conn:
        if not await bmc.LeaseBmc.hold(conn, tenure.name, holder=tenure.holder, token=tenure.token):
            return None
        flow = await _lock(conn, schedule)
        records = [
            bmc.NewSlot(schedule_id=schedule.id, scheduled_at=slot, outcome=SlotOutcome.MISSED, detail=why)
            for slot, why in missed
        ]
        live = {r.id: r for r in await bmc.FlowRunBmc.live(conn, schedule_id=schedule.id)}
        plan = plan_overlap(
            flow.concurrency,
            [RunRef(task_id=uuid7(), scheduled_at=slot) for slot in run],
            [RunRef(task_id=r.id, scheduled_at=r.scheduled_at or r.created_at) for r in live.values()],
        )
        for ref in plan.cancel:
            reason = f"replaced by the run of the slot at {plan.run[0].scheduled_at.isoformat()}"
            await _flow_runs.cancel_run(conn, ref.task_id, reason=reason)
        records += [
            bmc.NewSlot(
                schedule_id=schedule.id,
                scheduled_at=skip.scheduled_at,
                outcome=SlotOutcome.SKIPPED_OVERLAP,
                detail=_skip_detail(skip),
            )
            for skip in plan.skip
        ]
        started = 0
        for ref in plan.run:
            try:
                async with db.savepoint(conn):  # a savepoint: a run that cannot start leaves nothing behind
                    await _flow_runs.start_run(
                        conn,
                        flow,
                        schedule.parameters,
                        by=None,
                        schedule_id=schedule.id,
                        scheduled_at=ref.scheduled_at,
                        run_id=ref.task_id,
                    )
            except Conflict as exc:
                records.append(
                    bmc.NewSlot(
                        schedule_id=schedule.id,
                        scheduled_at=ref.scheduled_at,
                        outcome=SlotOutcome.MISSED,
                        detail=f"the flow run could not start: {exc}",
                    )
                )
                continue
            started += 1
            records.append(
                bmc.NewSlot(
                    schedule_id=schedule.id,
                    scheduled_at=ref.scheduled_at,
                    outcome=SlotOutcome.RAN,
                    flow_run_id=ref.task_id,
                )
            )
        await bmc.SlotBmc.record_many(conn, records)
        written = await bmc.ScheduleBmc.advance(
            conn,
            schedule.id,
            generated_until=cursor,
            fired=fired,
            expire=expire,
            lease_name=tenure.name,
            holder=tenure.holder,
            token=tenure.token,
        )
        if written is None:
            return None
    return Fired(schedule=written, runs=started)


async def _lock(conn: db.Connection, schedule: Schedule) -> Flow:
    """Lock the flow, then the schedule, and check that neither changed since ``schedule`` was read."""
    assert schedule.flow_id is not None, "only flow schedules fire runs"
    try:
        flow = await bmc.FlowBmc.get(conn, schedule.flow_id, lock=True)
        current = await bmc.ScheduleBmc.get(conn, schedule.id, lock=True)
    except NotFound:
        raise Stale from None
    if changed_since(schedule, current, target=flow.status):
        raise Stale
    return flow


def changed_since(listed: Schedule, current: Schedule, *, target: JobStatus) -> bool:
    """True when a schedule read again under its lock (``current``) is no longer what the generator listed,
    or it or its job or flow (``target``) stopped being enabled: its slots are left to the next cycle."""
    return (
        target is not JobStatus.ENABLED
        or current.status is not ScheduleStatus.ENABLED
        or current.generated_until != listed.generated_until
        or current.updated_at != listed.updated_at
    )


def _skip_detail(skip: Skip) -> str:
    """Why a due slot started no run, for its slot record."""
    if skip.replaced:
        return f"replaced by the slot at {skip.blocker.scheduled_at.isoformat()} before it started"
    return (
        f"the run of the slot at {skip.blocker.scheduled_at.isoformat()} (flow run {skip.blocker.task_id}) "
        "was still going (concurrency forbid)"
    )
