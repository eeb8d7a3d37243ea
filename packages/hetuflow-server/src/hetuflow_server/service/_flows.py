"""Follow-up of flow runs after some of their tasks ended: skip unreachable steps, derive the run's state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from uuid import UUID

from hetuflow_server.infra import bmc, db

__all__ = ["settle_flow_runs"]


class _Ended(Protocol):
    """A task that ended, as far as its flow run cares (a `Task`, or the outcome of a status change)."""

    @property
    def flow_run_id(self) -> UUID | None: ...


# A flow is a DAG of at most 1000 steps, so skipping spreads at most that many levels.
_MAX_SKIP_ROUNDS = 1000


async def settle_flow_runs(conn: db.Connection, tasks: Iterable[_Ended]) -> None:
    """For the flow runs of ``tasks``: skip steps whose dependencies cannot succeed any more, then refresh
    each run's status from its tasks."""
    run_ids = sorted({task.flow_run_id for task in tasks if task.flow_run_id is not None})
    if not run_ids:
        return
    for _ in range(_MAX_SKIP_ROUNDS):
        if not await bmc.TaskBmc.skip_blocked_flow_tasks(conn, run_ids):
            break
    await bmc.FlowRunBmc.refresh(conn, run_ids)


def flow_run_ids(tasks: Iterable[_Ended]) -> list[UUID]:
    """The distinct flow runs of ``tasks``."""
    return sorted({task.flow_run_id for task in tasks if task.flow_run_id is not None})
