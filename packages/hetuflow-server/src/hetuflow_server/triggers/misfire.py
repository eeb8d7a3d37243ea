"""Misfire policy: which late slots of a schedule still run, decided the same way wherever a slot is judged.

A slot is *late* when it starts more than the schedule's ``misfire_grace_secs`` (plus ``MISFIRE_SLACK_SECS``,
the scheduler's own latency) after its time: after an outage, or when the generator's cursor is behind the
clock. ``skip`` runs none of them, ``run_once`` the latest, ``run_all`` the latest ``misfire_max_runs``; the
others are recorded ``missed``. Every rule is one test (*a late slot runs while fewer than ``keep`` later late
slots of its schedule exist*), so the generator and the dispatcher's admission step agree on which slots run,
whichever sees a slot first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import msgspec

from hetuflow_core.enums import MisfirePolicy

__all__ = ["MISFIRE_SLACK_SECS", "LateSlots", "MisfireRule", "SlotSplit", "split_slots"]

MISFIRE_SLACK_SECS: Final = 1.0
"""Lateness the scheduler forgives on top of every grace period: its own dispatch and generation latency."""


class MisfireRule(msgspec.Struct, kw_only=True, frozen=True):
    """A schedule's misfire settings (``misfire_policy``, ``misfire_grace_secs``, ``misfire_max_runs``)."""

    policy: MisfirePolicy = MisfirePolicy.SKIP
    grace_secs: float = 0.0
    max_runs: int = 100

    @property
    def keep(self) -> int:
        """How many of the latest late slots still run: 0 (skip), 1 (run_once) or ``max_runs`` (run_all)."""
        if self.policy is MisfirePolicy.RUN_ALL:
            return self.max_runs
        if self.policy is MisfirePolicy.RUN_ONCE:
            return 1
        return 0

    def cutoff(self, now: datetime) -> datetime:
        """Slots strictly before this instant are late at ``now``."""
        return now - timedelta(seconds=self.grace_secs + MISFIRE_SLACK_SECS)

    def is_late(self, slot: datetime, now: datetime) -> bool:
        """True when ``slot`` has not started and is too late to run normally at ``now``."""
        return slot < self.cutoff(now)

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
