"""The task and attempt state machines as data: for each target state, the states it may be entered from.

Every status change in SQL is a conditional ``UPDATE ... WHERE status = ANY(%(allowed)s)`` (or a join against
the ``(from, to)`` pairs for batched updates) whose ``allowed`` comes from these tables, so the rules live
here once. An update that finds its row in another state changes nothing, and the caller raises
``IllegalTransition``. docs/architecture.md (Task and attempt states) lists the edges and why each exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, TypeVar

from hetuflow_core.enums import InstanceStatus, TaskStatus

__all__ = [
    "INSTANCE_TRANSITIONS",
    "TASK_TRANSITIONS",
    "allowed_sources",
    "edges_json",
    "is_allowed",
    "transition_pairs",
]

S = TypeVar("S", TaskStatus, InstanceStatus)

_T = TaskStatus
TASK_TRANSITIONS: Final[Mapping[TaskStatus, frozenset[TaskStatus]]] = {
    _T.DISPATCHED: frozenset({_T.PENDING}),
    _T.RUNNING: frozenset({_T.DISPATCHED}),
    _T.SUCCEEDED: frozenset({_T.RUNNING}),
    _T.FAILED: frozenset({_T.RUNNING, _T.DISPATCHED}),
    _T.SKIPPED: frozenset({_T.RUNNING, _T.PENDING}),
    _T.WAITING_RETRY: frozenset({_T.RUNNING, _T.DISPATCHED}),
    _T.PENDING: frozenset({_T.WAITING_RETRY}),
    _T.CANCELLED: frozenset({_T.PENDING, _T.DISPATCHED, _T.RUNNING, _T.WAITING_RETRY}),
}

_I = InstanceStatus
INSTANCE_TRANSITIONS: Final[Mapping[InstanceStatus, frozenset[InstanceStatus]]] = {
    _I.DISPATCHED: frozenset(),  # only ever inserted in this state
    _I.RUNNING: frozenset({_I.DISPATCHED}),
    _I.SUCCEEDED: frozenset({_I.RUNNING}),
    _I.FAILED: frozenset({_I.RUNNING, _I.DISPATCHED}),
    _I.TIMEOUT: frozenset({_I.RUNNING}),
    _I.CANCELLED: frozenset({_I.RUNNING, _I.DISPATCHED}),
    _I.LOST: frozenset({_I.RUNNING, _I.DISPATCHED}),
}


def _table(target: S) -> Mapping[S, frozenset[S]]:
    if isinstance(target, TaskStatus):
        return TASK_TRANSITIONS
    return INSTANCE_TRANSITIONS


def allowed_sources(target: S) -> list[str]:
    """The states ``target`` may be entered from, as the text values a SQL ``= ANY(%(allowed)s)`` binds."""
    return sorted(state.value for state in _table(target).get(target, frozenset()))


def is_allowed(source: S, target: S) -> bool:
    """True when the state machine allows moving from ``source`` to ``target``."""
    return source in _table(target).get(target, frozenset())


def transition_pairs(table: Mapping[S, frozenset[S]]) -> tuple[list[str], list[str]]:
    """Every allowed edge of ``table`` as two parallel lists (from, to) for batched SQL joins."""
    sources: list[str] = []
    targets: list[str] = []
    for target, froms in sorted(table.items()):
        for source in sorted(froms):
            sources.append(source.value)
            targets.append(target.value)
    return sources, targets


def edges_json(table: Mapping[S, frozenset[S]]) -> str:
    """Every allowed edge of ``table`` as a JSON array of ``{"from_status", "to_status"}`` objects: one
    parameter for batched SQL joins, built once."""
    sources, targets = transition_pairs(table)
    return json.dumps([{"from_status": f, "to_status": t} for f, t in zip(sources, targets, strict=True)])
