"""Misfire policy: which slots wait for an agent, which are late and which of those still run, decided the
same way wherever a slot is judged.

A slot whose task was planned in time and that the scheduler has watched since its time (up without a gap,
or back within grace and slack of it) only waits for capacity: it runs when an agent is free, however long
that takes, unless the schedule's ``start_deadline_secs`` passes first (then it is missed). Any other slot is
*late* when it starts more than the schedule's ``misfire_grace_secs`` (plus the slack, the scheduler's own
latency) after its time: after an outage, a pause, or when the generator's cursor is behind the clock.
``skip`` runs none of them, ``run_once`` the latest, ``run_all`` the latest ``misfire_max_runs``; the others
are recorded ``missed``. Every rule is one test (*a late slot runs while fewer than ``keep`` later late slots
of its schedule exist*), so the generator and the dispatcher's admission step agree on which slots run,
whichever sees a slot first.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import msgspec

from hetuflow_core.enums import MisfirePolicy

__all__ = ["MISFIRE_SLACK_SECS", "LateSlots", "MisfireRule", "SlotSplit", "Verdict", "split_slots"]

MISFIRE_SLACK_SECS: Final = 1.0
"""Default lateness the scheduler forgives on top of every grace period and start deadline: its own dispatch
and generation latency (``scheduler.misfire_slack_secs``)."""


class Verdict(enum.Enum):
    """How a slot that has not started stands at a given instant."""

    ON_TIME = "on_time"
    """Not late (not due yet, or within grace and slack)."""
    WAITING = "waiting"
    """Planned and watched in time: it only waits for a free agent, and runs whenever one is."""
    LATE = "late"
    """Late, and neither planned nor watched in time: the misfire policy decides whether it runs."""
    PAST_DEADLINE = "past_deadline"
    """The schedule's start deadline passed: missed, whatever else holds."""


class MisfireRule(msgspec.Struct, kw_only=True, frozen=True):
    """A schedule's misfire settings (``misfire_policy``, ``misfire_grace_secs``, ``misfire_max_runs``,
    ``start_deadline_secs``) and the scheduler's slack. The defaults are those of a new schedule."""

    policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    grace_secs: float = 60.0
    max_runs: int = 100
    start_deadline_secs: float | None = None
    slack_secs: float = MISFIRE_SLACK_SECS

    @property
    def keep(self) -> int:
        """How many of the latest late slots still run: 0 (skip), 1 (run_once) or ``max_runs`` (run_all)."""
        if self.policy is MisfirePolicy.RUN_ALL:
            return self.max_runs
        if self.policy is MisfirePolicy.RUN_ONCE:
            return 1
        return 0

    @property
    def tolerance(self) -> timedelta:
        """How late a slot may be seen and still count as seen in time: grace plus slack."""
        return timedelta(seconds=self.grace_secs + self.slack_secs)

    def cutoff(self, now: datetime) -> datetime:
        """Slots strictly before this instant are late at ``now``."""
        return now - self.tolerance

    def is_late(self, slot: datetime, now: datetime) -> bool:
        """True when ``slot`` has not started and is too late to run normally at ``now``."""
        return slot < self.cutoff(now)

    def unwatched_before(self, up_since: datetime) -> datetime:
        """Slots strictly before this instant came due in an outage that ended at ``up_since`` and were not
        seen within grace and slack of their time: the misfire policy judges them, however they were planned.

        Measured from when the scheduler came back, not from the dispatch that first looks at a slot: how
        long agents take to reconnect, or how many dispatch rounds a backlog needs, must not turn a slot the
        scheduler was back in time for into a misfire (nor decide which late slot is the latest)."""
        return up_since - self.tolerance

    def waits_for_capacity(self, slot: datetime, *, planned_at: datetime, up_since: datetime) -> bool:
        """True when the slot's task existed before the slot could be late (``planned_at``, when it was made)
        and the scheduler has been up without a gap since the slot's time, or came back within grace and
        slack of it (``up_since``): nothing but a free agent was missing, so the slot is not a misfire."""
        return planned_at <= slot + self.tolerance and slot >= self.unwatched_before(up_since)

    def past_deadline(self, slot: datetime, now: datetime) -> bool:
        """True when the schedule has a start deadline and ``slot`` can no longer start within it at
        ``now``."""
        if self.start_deadline_secs is None:
            return False
        return now - slot > timedelta(seconds=self.start_deadline_secs + self.slack_secs)

    def judge(self, slot: datetime, *, planned_at: datetime, up_since: datetime, now: datetime) -> Verdict:
        """Where a slot that has not started stands at ``now`` (see `Verdict`); for ``LATE`` slots
        ``runs_late`` then says whether the policy still runs it."""
        if self.past_deadline(slot, now):
            return Verdict.PAST_DEADLINE
        if not self.is_late(slot, now):
            return Verdict.ON_TIME
        if self.waits_for_capacity(slot, planned_at=planned_at, up_since=up_since):
            return Verdict.WAITING
        return Verdict.LATE

    def runs_late(self, later_late: int) -> bool:
        """Whether a late slot still runs, given how many later slots of its schedule are late too."""
        return later_late < self.keep

    def missed_detail(self, slot: datetime, now: datetime) -> str:
        """Why a late slot did not run, for its slot record."""
        late_secs = (now - slot).total_seconds()
        reason = f"{late_secs:.1f} s late, grace {self.grace_secs:g} s"
        if self.policy is MisfirePolicy.SKIP:
            return f"{reason}: misfire policy skip"
        runs = "the latest late slot runs" if self.keep == 1 else f"the latest {self.keep} late slots run"
        return f"{reason}: misfire policy {self.policy.value}, {runs}"

    def deadline_detail(self, slot: datetime, now: datetime) -> str:
        """Why a slot past its start deadline did not run, for its slot record."""
        late_secs = (now - slot).total_seconds()
        deadline = f"{self.start_deadline_secs:g} s"
        return f"{late_secs:.1f} s late: not started within the start deadline of {deadline}"


class LateSlots:
    """Late slots fed in time order, keeping the latest ``keep``: whatever falls out is certainly missed.

    This lets the generator stream through a long outage (one slot per second for a day is 86 400 slots) in
    bounded memory, recording misses as it goes, without knowing in advance how many late slots follow.
    """

    def __init__(self, keep: int) -> None:
        if keep < 0:
            raise ValueError(f"keep must not be negative, got {keep}")
        self._keep = keep
        self._kept: deque[datetime] = deque()

    def add(self, slot: datetime) -> datetime | None:
        """Take the next late slot (later than all before); return the slot now known to be missed, if any."""
        if self._kept and slot <= self._kept[-1]:
            raise ValueError(f"late slots must come in increasing order: {slot} after {self._kept[-1]}")
        if self._keep == 0:
            return slot
        self._kept.append(slot)
        if len(self._kept) > self._keep:
            return self._kept.popleft()
        return None

    @property
    def kept(self) -> list[datetime]:
        """The late slots that run (the latest ``keep``), in time order."""
        return list(self._kept)


class SlotSplit(msgspec.Struct, kw_only=True, frozen=True):
    """Slots split by the misfire policy: those to run (late survivors and on-time slots) and those missed."""

    run: list[datetime]
    missed: list[datetime]


def split_slots(rule: MisfireRule, slots: Iterable[datetime], now: datetime) -> SlotSplit:
    """Apply ``rule`` at ``now`` to slots in increasing time order that have not run yet."""
    late = LateSlots(rule.keep)
    missed: list[datetime] = []
    on_time: list[datetime] = []
    for slot in slots:
        if rule.is_late(slot, now):
            dropped = late.add(slot)
            if dropped is not None:
                missed.append(dropped)
        else:
            on_time.append(slot)
    return SlotSplit(run=late.kept + on_time, missed=missed)
