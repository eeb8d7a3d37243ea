"""What ``hetuflow apply`` would change: the declared objects against the server's, as a list of changes.

Pure: it takes what the files declare (`Desired`) and what the server holds (`Current`) and returns a
`Plan`, so the diff is testable without a server. Jobs are matched by namespace and name, flows by name.
Schedules have no name: those of a job that declares ``schedules`` are matched first to identical stored
ones, then the rest pair up by kind in order (an edited cron is one update, not a delete and a create), and
what is left is created or deleted. With ``prune``, managed jobs and flows of the applied namespaces that
no file declares are deleted; hand-made ones never are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

import msgspec

from hetuflow_core.cli._desired import Declared, Desired, JobKey
from hetuflow_core.cli._files import SpecError
from hetuflow_core.cli._spec import FlowSpec, JobSpec, ScheduleSpec, mark, unmark
from hetuflow_core.enums import JobStatus, TriggerRule
from hetuflow_core.flow import Flow
from hetuflow_core.job import Job, JobCreate, JobUpdate
from hetuflow_core.schedule import Schedule, ScheduleUpdate

__all__ = ["SCHEDULE_FIELDS", "Change", "Current", "Plan", "field_changes", "make_plan", "schedule_rule"]

# Compared between a declared schedule and a stored one; ``status`` only when the file gives it.
SCHEDULE_FIELDS: Final = tuple(name for name in ScheduleSpec.__struct_fields__ if name != "status")
_SHORT: Final = 60


@dataclasses.dataclass
class Current:
    """What the server holds: every live job, schedule and flow."""

    jobs: Sequence[Job]
    schedules: Sequence[Schedule]
    flows: Sequence[Flow]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Change:
    """One change: ``action`` (create, update, delete) of ``kind`` (job, schedule, flow), the label
    shown for it, the changed fields (updates), and what the executor needs to make it: the stored
    object's id (``target``), the request body, the declared schedule or flow, and where it is declared."""

    action: str
    kind: str
    label: str
    details: tuple[str, ...] = ()
    job: JobKey | None = None
    target: UUID | None = None
    job_create: JobCreate | None = None
    job_update: JobUpdate | None = None
    schedule: ScheduleSpec | None = None
    schedule_update: ScheduleUpdate | None = None
    flow: FlowSpec | None = None
    flow_description: str | None = None
    """The description a flow update writes (marked managed when the stored flow is)."""
    namespace: str | None = None
    declared: Declared | None = None


@dataclasses.dataclass
class Plan:
    """The changes in the order they are made, and what stays as it is."""

    changes: list[Change]
    unchanged: list[str]
    left_alone: list[str]
    """Managed objects no file declares, kept because ``prune`` was not asked for."""

    def count(self, action: str) -> int:
        return sum(change.action == action for change in self.changes)


def schedule_rule(schedule: ScheduleSpec | Schedule) -> str:
    """A short label of when a schedule fires: ``cron "30 2 * * *" Europe/Berlin``, ``interval 60s`` ..."""
    if schedule.cron_expression is not None:
        return f'{schedule.kind} "{schedule.cron_expression}" {schedule.timezone}'
    if schedule.interval_secs is not None:
        return f"{schedule.kind} {schedule.interval_secs}s"
    if schedule.event_name is not None:
        return f"{schedule.kind} {schedule.event_name}"
    if schedule.start_time is not None:
        return f"{schedule.kind} {schedule.start_time.isoformat()}"
    return str(schedule.kind)


def _short(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def field_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``field: old → new`` for every leaf that differs (environment values are not shown)."""
    if isinstance(old, dict) and isinstance(new, dict) and not prefix.endswith("parameters"):
        changes = []
        for key in sorted(set(old) | set(new), key=str):
            changes += field_changes(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return changes
    if old == new:
        return []
    if prefix.startswith("env.") or ".env." in prefix:
        return [f"{prefix}: changed (value hidden)"]
    return [f"{prefix}: {_short(old)} → {_short(new)}"]


_StepKey = tuple[str, UUID | None, Any, list[str], float | None, TriggerRule]
"""What the plan compares of a flow step: name, job id, parameters, dependencies, timeout, trigger rule."""


class _Planner:
    def __init__(self, desired: Desired, current: Current, prune: bool) -> None:
        self.desired = desired
        self.prune = prune
        self.jobs = {(job.namespace, job.name): job for job in current.jobs}
        self.job_keys = {job.id: (job.namespace, job.name) for job in current.jobs}
        self.schedules: dict[UUID, list[Schedule]] = {}
        for schedule in current.schedules:
            if schedule.job_id is not None:  # a flow's schedule is no job's
                self.schedules.setdefault(schedule.job_id, []).append(schedule)
        self.flows = {flow.name: flow for flow in current.flows}
        self.changes: list[Change] = []
        self.schedule_changes: list[Change] = []
        self.unchanged: list[str] = []
        self.left_alone: list[str] = []
        self.pruned: set[JobKey] = set()

    def plan(self) -> Plan:
        for key, (spec, declared) in self.desired.jobs.items():
            self._job(key, spec, declared)
        self._prune_jobs()
        flow_changes = []
        for name, (flow, namespace, where) in self.desired.flows.items():
            change = self._flow(name, flow, namespace, where)
            if change is not None:
                flow_changes.append(change)
        # A flow is deleted before the jobs it may name.
        flow_changes += self._prune_flows()
        deletions = [change for change in self.changes if change.action == "delete"]
        writes = [change for change in self.changes if change.action != "delete"]
        changes = writes + sorted(self.schedule_changes, key=_schedule_order) + flow_changes + deletions
        return Plan(changes, self.unchanged, self.left_alone)

    def _job(self, key: JobKey, spec: JobSpec, declared: Declared) -> None:
        label = f"job {key[0]}/{key[1]}"
        job = self.jobs.get(key)
        if job is None:
            status = JobStatus.ENABLED if spec.status is msgspec.UNSET else spec.status
            body = JobCreate(
                name=spec.name,
                namespace=key[0],
                description=mark(spec.description),
                status=status,
                config=spec.config,
            )
            self.changes.append(
                Change(action="create", kind="job", label=label, job_create=body, job=key, declared=declared)
            )
            for j, schedule in enumerate(spec.schedules or ()):
                self._create_schedule(key, j, schedule, declared)
            return
        description, managed, _ = unmark(job.description)
        update = JobUpdate()
        details = []
        if description != spec.description:
            update.description = mark(spec.description) if managed else spec.description
            details += field_changes(description, spec.description, "description")
        if spec.status is not msgspec.UNSET and spec.status != job.status:
            update.status = spec.status
            details += field_changes(job.status, spec.status, "status")
        # The server shows secret env values masked, so they are compared masked: a change of a secret value
        # alone is not seen (the update of any other field sends it along).
        old_config, new_config = msgspec.to_builtins(job.config), msgspec.to_builtins(spec.config.redacted())
        if old_config != new_config:
            update.config = spec.config
            details += field_changes(old_config, new_config, "config")
        if details:
            self.changes.append(
                Change(
                    action="update",
                    kind="job",
                    label=label,
                    details=tuple(details),
                    target=job.id,
                    job_update=update,
                    job=key,
                    declared=declared,
                )
            )
        else:
            self.unchanged.append(label)
        if spec.schedules is not msgspec.UNSET:
            self._schedules(key, job, spec.schedules, declared)

    def _create_schedule(self, key: JobKey, index: int, spec: ScheduleSpec, declared: Declared) -> None:
        label = f"schedule of job {key[0]}/{key[1]}: {schedule_rule(spec)}"
        where = Declared(declared.source, (*declared.field, "schedules", index))
        self.schedule_changes.append(
            Change(action="create", kind="schedule", label=label, schedule=spec, job=key, declared=where)
        )

    def _schedules(self, key: JobKey, job: Job, wanted: list[ScheduleSpec], declared: Declared) -> None:
        stored = list(self.schedules.get(job.id, []))
        pending: list[tuple[int, ScheduleSpec]] = []
        for index, spec in enumerate(wanted):
            same = next((s for s in stored if not _schedule_differences(s, spec)), None)
            if same is None:
                pending.append((index, spec))
            else:
                stored.remove(same)
                self.unchanged.append(f"schedule of job {key[0]}/{key[1]}: {schedule_rule(spec)}")
        for index, spec in pending:
            paired = next((s for s in stored if s.kind == spec.kind), None)
            if paired is None:
                self._create_schedule(key, index, spec, declared)
                continue
            stored.remove(paired)
            update = ScheduleUpdate(**{f: getattr(spec, f) for f in _schedule_differences(paired, spec)})
            details = [
                line
                for f in _schedule_differences(paired, spec)
                for line in field_changes(
                    msgspec.to_builtins(getattr(paired, f)), msgspec.to_builtins(getattr(spec, f)), f
                )
            ]
            self.schedule_changes.append(
                Change(
                    action="update",
                    kind="schedule",
                    label=f"schedule of job {key[0]}/{key[1]}: {schedule_rule(paired)}",
                    details=tuple(details),
                    target=paired.id,
                    schedule_update=update,
                    schedule=spec,
                    job=key,
                    declared=Declared(declared.source, (*declared.field, "schedules", index)),
                )
            )
        for schedule in stored:
            self.schedule_changes.append(
                Change(
                    action="delete",
                    kind="schedule",
                    label=f"schedule of job {key[0]}/{key[1]}: {schedule_rule(schedule)}",
                    target=schedule.id,
                    job=key,
                )
            )

    def _prune_jobs(self) -> None:
        for key, job in self.jobs.items():
            if (
                key[0] not in self.desired.namespaces
                or key in self.desired.jobs
                or not unmark(job.description)[1]
            ):
                continue
            label = f"job {key[0]}/{key[1]}"
            if self.prune:
                self.pruned.add(key)
                self.changes.append(Change(action="delete", kind="job", label=label, target=job.id, job=key))
            else:
                self.left_alone.append(label)

    def _step_job(self, namespace: str, reference: str, declared: Declared, index: int) -> Job | None:
        """The stored job a flow step names (None: created by this apply); SpecError when there is none."""
        space, _, name = reference.rpartition("/")
        key = (space or namespace, name)
        problem = None
        if key in self.pruned:
            problem = f"job {key[0]}/{key[1]} is deleted by --prune (no file declares it)"
        elif key not in self.desired.jobs and key not in self.jobs:
            problem = f"no job {key[0]}/{key[1]} on the server or in the files"
        if problem is not None:
            raise SpecError([declared.where("steps", index, "job", message=problem)])
        return self.jobs.get(key)

    def _flow(self, name: str, spec: FlowSpec, namespace: str, declared: Declared) -> Change | None:
        label = f"flow {name}"
        steps: list[_StepKey] = []
        for i, step in enumerate(spec.steps):
            job = self._step_job(namespace, step.job, declared, i)
            steps.append(
                (
                    step.name,
                    job.id if job else None,
                    step.parameters,
                    step.depends_on,
                    step.timeout_secs,
                    step.trigger_rule,
                )
            )
        flow = self.flows.get(name)
        if flow is None:
            return Change(
                action="create", kind="flow", label=label, flow=spec, namespace=namespace, declared=declared
            )
        description, managed, _ = unmark(flow.description)
        details = field_changes(description, spec.description, "description")
        stored = [
            (s.name, s.job_id, s.parameters, s.depends_on, s.timeout_secs, s.trigger_rule) for s in flow.steps
        ]
        if stored != steps:
            old = [self._step_text(s) for s in stored]
            new = [self._step_text(s, namespace, spec.steps[i].job) for i, s in enumerate(steps)]
            details += field_changes(old, new, "steps")
        if not details:
            self.unchanged.append(label)
            return None
        return Change(
            action="update",
            kind="flow",
            label=label,
            details=tuple(details),
            target=flow.id,
            flow=spec,
            flow_description=mark(spec.description, namespace) if managed else spec.description,
            namespace=namespace,
            declared=declared,
        )

    def _step_text(self, step: _StepKey, namespace: str = "", ref: str = "") -> str:
        name, job_id, parameters, depends_on, timeout_secs, trigger_rule = step
        key = self.job_keys.get(job_id) if job_id else None
        job = f"{key[0]}/{key[1]}" if key else (ref if "/" in ref else f"{namespace}/{ref}")
        text = f"{name}={job} after {','.join(depends_on) or '-'} with {_short(parameters)}"
        if trigger_rule is not TriggerRule.ALL_SUCCESS:
            text += f" when {trigger_rule}"
        return text + (f" timeout {timeout_secs:g}s" if timeout_secs is not None else "")

    def _prune_flows(self) -> list[Change]:
        changes = []
        for name, flow in self.flows.items():
            _, managed, namespace = unmark(flow.description)
            if not managed or namespace not in self.desired.namespaces or name in self.desired.flows:
                continue
            if self.prune:
                changes.append(Change(action="delete", kind="flow", label=f"flow {name}", target=flow.id))
            else:
                self.left_alone.append(f"flow {name}")
        return changes


def _schedule_order(change: Change) -> int:
    return {"delete": 0, "update": 1, "create": 2}[change.action]


def _schedule_differences(stored: Schedule, spec: ScheduleSpec) -> list[str]:
    fields = [f for f in SCHEDULE_FIELDS if getattr(stored, f) != getattr(spec, f)]
    if spec.status is not msgspec.UNSET and spec.status != stored.status:
        fields.append("status")
    return fields


def make_plan(desired: Desired, current: Current, *, prune: bool) -> Plan:
    """The changes that make the server hold what ``desired`` declares (see the module docstring)."""
    return _Planner(desired, current, prune).plan()
