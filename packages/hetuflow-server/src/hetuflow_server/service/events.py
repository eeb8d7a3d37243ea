"""EventService: an event fires every enabled event schedule listening to its name.

Each matching schedule (of an enabled, live job) gets one task, due now, with the schedule's parameters
overlaid by the event payload. Event tasks belong to no schedule slot (``schedule_id`` is NULL, origin
``event``), so the unique slot key never makes two events of the same name collide. A broadcast job gets one
task per matching online agent (``service.new_tasks``). An event schedule of a flow starts one run of it with
the schedule's parameters overlaid by the payload; the run's step tasks are among the ids returned. A flow
whose run cannot start (a step's job was deleted) is left out and logged; the other targets still start.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from hetuflow_core.task import TriggerResult
from hetuflow_server.errors import Conflict
from hetuflow_server.infra import bmc, db, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service import _flow_runs, new_tasks
from hetuflow_server.service._validation import invalid

__all__ = ["EventService"]

logger = logging.getLogger(__name__)

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class EventService:
    """Named events that start event-scheduled jobs."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def fire(self, name: str, payload: dict[str, Any], *, by: str | None = None) -> TriggerResult:
        """Create one task per enabled event schedule listening to ``name``; the ids (possibly none)."""
        if not _NAME.match(name):
            raise invalid(
                "$.name", "letters, digits, '_', '.', '-', starting with a letter or digit (max 128)"
            )
        if not isinstance(payload, dict):
            raise invalid("$", "the event payload must be a JSON object")
        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            targets = await bmc.ScheduleBmc.event_targets(conn, name)
            tasks = [
                new_tasks.new_task(
                    target.job_id,
                    target.config,
                    origin=bmc.TaskOrigin.EVENT,
                    scheduled_at=now,
                    parameters={**target.parameters, **payload},
                )
                for target in targets
            ]
            created = await bmc.TaskBmc.insert_many(conn, await new_tasks.fan_out(conn, tasks), by=by)
            if created:
                await notify.work_added(conn)
            flow_tasks = await _start_flows(conn, name, payload, by=by)
        return TriggerResult(task_ids=[task.id for task in created] + flow_tasks)


async def _start_flows(
    conn: db.Connection, name: str, payload: dict[str, Any], *, by: str | None
) -> list[UUID]:
    """One run of every enabled flow with an event schedule listening to ``name``; the ids of their tasks."""
    task_ids: list[UUID] = []
    for target in await bmc.ScheduleBmc.flow_event_targets(conn, name):
        flow = await bmc.FlowBmc.get(conn, target.flow_id)
        try:
            async with db.savepoint(conn):  # a savepoint: a flow that cannot start leaves nothing behind
                run = await _flow_runs.start_run(
                    conn, flow, {**target.parameters, **payload}, by=by, schedule_id=target.schedule_id
                )
        except Conflict as exc:
            logger.warning(
                "event %s: flow %s did not start: %s", name, flow.id, exc, extra={"flow_id": str(flow.id)}
            )
            continue
        task_ids.extend(step.task_id for step in run.steps)
    return task_ids
