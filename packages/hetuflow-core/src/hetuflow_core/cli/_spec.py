"""The jobs-as-code file format: what ``hetuflow apply`` reads and ``hetuflow export`` writes.

A file declares jobs (each with its schedules) and flows by name, in one namespace. The Structs here reuse
the core's field types (``JobConfig``, the constrained names, cron and time-zone types), so a file is held
to the same limits as the REST API, and ``file_schema()`` (the JSON Schema editors complete from) comes from
the same definitions. Fields left out of a job keep the server's value where that is safe: a job without
``status`` is not enabled or disabled by apply, a job without ``schedules`` keeps the schedules it has.

An object is *managed* when apply created it: its stored description ends with the `MANAGED_MARK` line.
Only managed objects are deleted by ``apply --prune``; the server keeps and returns descriptions as given,
and nothing else reads them, so the mark changes no behaviour.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

from hetuflow_core.enums import (
    CommandKind,
    JobStatus,
    MisfirePolicy,
    ScheduleKind,
    ScheduleStatus,
    TriggerRule,
)
from hetuflow_core.job import JobConfig
from hetuflow_core.schedule import (
    CronExpression,
    GraceSecs,
    IntervalSecs,
    MaxCount,
    MisfireMaxRuns,
    StartDeadlineSecs,
    TimeZoneName,
)
from hetuflow_core.schema import JSON_SCHEMA_DIALECT
from hetuflow_core.types import Name, Namespace, Parameters, Seconds

__all__ = [
    "MANAGED_MARK",
    "ApplyFile",
    "FlowSpec",
    "FlowStepSpec",
    "JobSpec",
    "ScheduleSpec",
    "config_problems",
    "file_schema",
    "flow_problems",
    "mark",
    "schedule_problems",
    "unmark",
]

MANAGED_MARK: Final = "managed-by: hetuflow apply"
_MARK_LINE: Final = re.compile(
    r"(?:\A|\n)managed-by: hetuflow apply(?: \(namespace (?P<namespace>[a-z0-9][a-z0-9_\-]*)\))?\Z"
)
# The stored description holds the user's text, a newline and the mark; the API allows 4096 characters.
_DESCRIPTION_MAX: Final = 4096 - len(MANAGED_MARK) - len(" (namespace )") - 64 - 1

Description = Annotated[str, msgspec.Meta(max_length=_DESCRIPTION_MAX)]
JobRef = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=193,
        pattern=r"^(?:[a-z0-9][a-z0-9_\-]*/)?[A-Za-z0-9][A-Za-z0-9_.\-]*(?!\n)$",
        description="A job of the file's namespace by name, or of another as namespace/name",
        examples=["extract", "etl/extract"],
    ),
]


class ScheduleSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A schedule of the job it is declared in; the fields of the API's ``ScheduleCreate``.

    ``status`` left out means: enabled when created, left as it is afterwards.
    """

    kind: ScheduleKind
    cron_expression: CronExpression | None = None
    timezone: TimeZoneName = "UTC"
    interval_secs: IntervalSecs | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_count: MaxCount | None = None
    event_name: Name | None = None
    parameters: Parameters = {}
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    misfire_grace_secs: GraceSecs = 60.0
    misfire_max_runs: MisfireMaxRuns = 100
    start_deadline_secs: StartDeadlineSecs | None = None
    status: ScheduleStatus | msgspec.UnsetType = msgspec.UNSET


class JobSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A job, named uniquely in its namespace, with what it runs and (optionally) all of its schedules.

    ``status`` left out: enabled when created, left as it is afterwards. ``schedules`` left out: the job's
    schedules are not apply's business; given (even empty), they are exactly the job's schedules.
    """

    name: Name
    description: Description = ""
    status: JobStatus | msgspec.UnsetType = msgspec.UNSET
    config: JobConfig
    schedules: list[ScheduleSpec] | msgspec.UnsetType = msgspec.UNSET


class FlowStepSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A step of a flow: a job by name, run after the steps it depends on (as its trigger rule says), with
    the job's timeout unless it gives its own."""

    name: Name
    job: JobRef
    parameters: Parameters = {}
    depends_on: Annotated[list[Name], msgspec.Meta(max_length=256)] = []
    timeout_secs: Seconds | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS


class FlowSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A flow (a DAG of job steps), named uniquely on the server."""

    name: Name
    description: Description = ""
    steps: Annotated[list[FlowStepSpec], msgspec.Meta(min_length=1, max_length=1000)]


class ApplyFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One file of ``hetuflow apply``: jobs and flows of one namespace (default ``default``; the command's
    ``--namespace`` overrides it)."""

    namespace: Namespace | msgspec.UnsetType = msgspec.UNSET
    jobs: list[JobSpec] = []
    flows: list[FlowSpec] = []


def file_schema() -> dict[str, Any]:
    """The JSON Schema of an apply file, for editors (``#:schema`` in TOML, ``$schema`` in YAML tools)."""
    schema = msgspec.json.schema(ApplyFile)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "hetuflow apply file", **schema}


def mark(description: str, namespace: str | None = None) -> str:
    """``description`` with the managed mark (and, for flows, the namespace that declared them)."""
    line = MANAGED_MARK if namespace is None else f"{MANAGED_MARK} (namespace {namespace})"
    return f"{description}\n{line}" if description else line


def unmark(description: str) -> tuple[str, bool, str | None]:
    """``(user description, managed, namespace in the mark)`` of a stored description."""
    found = _MARK_LINE.search(description)
    if found is None:
        return description, False, None
    return description[: found.start()], True, found.group("namespace")


# What the agent's executor accepts; the server checks the same when a job is stored, and a file is checked
# here first so that an apply is refused before anything changes rather than halfway through.
_TAKES_SCRIPT: Final = frozenset(
    {CommandKind.BASH, CommandKind.PYTHON, CommandKind.UV, CommandKind.NODE, CommandKind.JAVA}
)
_NEEDS_ARGS: Final = frozenset({CommandKind.NPX, CommandKind.CARGO})
_WINDOW: Final = ("start_time", "end_time", "max_count")


def config_problems(config: JobConfig) -> list[tuple[str, str]]:
    """``(field, reason)`` for what the types cannot say about a job's config."""
    problems = []
    if config.command in _TAKES_SCRIPT and config.script is None and not config.args:
        problems.append(("script", f"a {config.command} job needs a script or args"))
    if config.command in _NEEDS_ARGS and not config.args:
        problems.append(("args", f"a {config.command} job needs args"))
    if config.script is not None and config.command not in _TAKES_SCRIPT:
        problems.append(("script", f"{config.command} jobs take args, not a script"))
    if config.retry.max_secs < config.retry.base_secs:
        problems.append(("retry.max_secs", "must not be smaller than base_secs"))
    problems += [
        (f"secret_env[{index}]", f"{name!r} is not a key of env")
        for index, name in enumerate(config.secret_env or ())
        if name not in config.env
    ]
    return problems


def schedule_problems(schedule: ScheduleSpec) -> list[tuple[str, str]]:
    """``(field, reason)`` for fields the schedule's kind needs or refuses (the server checks the values)."""
    kind = schedule.kind
    problems = []
    if kind is ScheduleKind.FLOW:
        problems.append(("kind", "a schedule belongs to a job; start a flow with `hetuflow flows run`"))
    required = {
        ScheduleKind.CRON: "cron_expression",
        ScheduleKind.INTERVAL: "interval_secs",
        ScheduleKind.ONCE: "start_time",
        ScheduleKind.EVENT: "event_name",
    }
    if kind in required and getattr(schedule, required[kind]) is None:
        problems.append((required[kind], f"required for {kind} schedules"))
    only = {
        "cron_expression": ScheduleKind.CRON,
        "interval_secs": ScheduleKind.INTERVAL,
        "event_name": ScheduleKind.EVENT,
    }
    for field, owner in only.items():
        if kind is not owner and getattr(schedule, field) is not None:
            problems.append((field, f"only {owner} schedules take one, this one is {kind}"))
    if kind is ScheduleKind.DAEMON:
        problems += [(field, "daemon schedules take none") for field in _WINDOW if getattr(schedule, field)]
    for field in ("start_time", "end_time"):
        value = getattr(schedule, field)
        if value is not None and value.utcoffset() is None:
            problems.append((field, "needs a UTC offset (a time without one names no instant)"))
    if schedule.status is ScheduleStatus.EXPIRED:
        problems.append(("status", "expired is set by the server when a schedule ends"))
    return problems


def flow_problems(flow: FlowSpec) -> list[tuple[str, str]]:
    """``(field, reason)`` for a flow's steps: unique names, known dependencies, no cycle."""
    index: dict[str, int] = {}
    problems = []
    for i, step in enumerate(flow.steps):
        if step.name in index:
            problems.append((f"steps[{i}].name", f"duplicate step name {step.name!r}"))
        index.setdefault(step.name, i)
    for i, step in enumerate(flow.steps):
        for j, dep in enumerate(step.depends_on):
            if dep not in index or dep == step.name:
                reason = "a step cannot depend on itself" if dep == step.name else f"no step named {dep!r}"
                problems.append((f"steps[{i}].depends_on[{j}]", reason))
    if problems:
        return problems
    # Kahn's algorithm: whatever cannot be ordered lies on a cycle.
    waiting = {step.name: set(step.depends_on) for step in flow.steps}
    while ready := [name for name, deps in waiting.items() if not deps]:
        for name in ready:
            del waiting[name]
        for deps in waiting.values():
            deps.difference_update(ready)
    if waiting:
        first = min(waiting, key=index.__getitem__)
        problems.append((f"steps[{index[first]}].depends_on", f"dependency cycle through {sorted(waiting)}"))
    return problems
