"""Overlap policy: what happens when a slot of a schedule comes due while an earlier run of it still goes.

The job's ``concurrency`` setting (copied into each task's config snapshot) decides:

- ``allow``: the new slot runs beside the old run.
- ``forbid``: the new slot is skipped (task ``skipped``, slot ``skipped_overlap``); the old run goes on.
- ``replace``: the old run is cancelled (the agent is told to stop it) and the new slot runs.

A run "still goes" while its task is dispatched or running. The decision is only exact when the slot is due,
so the dispatcher starts ``forbid`` and ``replace`` slots at their time, never ahead of it (see
``admission``); this module is the pure decision for the due slots of one schedule. When several slots of a
schedule come due in one batch (after an outage), they are taken in time order, as if each came due on its
own: under ``forbid`` the first runs and blocks the rest, under ``replace`` the last one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from hetuflow_core.enums import ConcurrencyPolicy

__all__ = ["OverlapPlan", "RunRef", "Skip", "plan_overlap"]


class RunRef(msgspec.Struct, kw_only=True, frozen=True):
    """A slot's task: the task id and the slot's time."""

    task_id: UUID
    scheduled_at: datetime


class Skip(msgspec.Struct, kw_only=True, frozen=True):
    """A due slot that does not run because of ``blocker``; ``replaced`` when a later slot took its place."""

    task_id: UUID
    scheduled_at: datetime
    blocker: RunRef
    replaced: bool = False

    @property
    def detail(self) -> str:
        """Why the slot did not run, for its slot record and the task's error."""
        if self.replaced:
            return f"replaced by the slot at {self.blocker.scheduled_at.isoformat()} before it started"
        return (
            f"the run of the slot at {self.blocker.scheduled_at.isoformat()} (task {self.blocker.task_id}) "
            "was still going (concurrency forbid)"
        )


class OverlapPlan(msgspec.Struct, kw_only=True, frozen=True):
    """The decision for the due slots of one schedule: run, skip, and live runs to cancel."""

    run: list[RunRef]
    skip: list[Skip]
    cancel: list[RunRef]


def plan_overlap(policy: ConcurrencyPolicy, due: Sequence[RunRef], live: Sequence[RunRef]) -> OverlapPlan:
    """Decide for ``due`` (the schedule's slots coming due now) given its ``live`` runs under ``policy``."""
    ordered = sorted(due, key=lambda ref: (ref.scheduled_at, ref.task_id))
    if policy is ConcurrencyPolicy.ALLOW or not ordered:
        return OverlapPlan(run=ordered, skip=[], cancel=[])
    if policy is ConcurrencyPolicy.FORBID:
        if live:
            blocker = min(live, key=lambda ref: (ref.scheduled_at, ref.task_id))
            skips = [_skip(ref, blocker) for ref in ordered]
            return OverlapPlan(run=[], skip=skips, cancel=[])
        first, rest = ordered[0], ordered[1:]
        return OverlapPlan(run=[first], skip=[_skip(ref, first) for ref in rest], cancel=[])
    # replace: the latest due slot runs; everything older, live or not started yet, gives way to it.
    winner, older = ordered[-1], ordered[:-1]
    skips = [_skip(ref, winner, replaced=True) for ref in older]
    return OverlapPlan(run=[winner], skip=skips, cancel=list(live))


def _skip(ref: RunRef, blocker: RunRef, *, replaced: bool = False) -> Skip:
    return Skip(task_id=ref.task_id, scheduled_at=ref.scheduled_at, blocker=blocker, replaced=replaced)
