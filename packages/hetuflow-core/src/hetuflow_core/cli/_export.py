"""``hetuflow export``: the server's jobs, schedules and flows of one namespace in the apply file format.

Only fields that differ from their defaults are written, so an exported file reads like a hand-written
one, and applying it changes nothing: statuses are written only when ``disabled`` (an ``expired`` schedule
is left to the server), and a job's ``schedules`` are always written, so the file owns them. A flow belongs
to the namespace its mark names when apply made it, else to the namespace of its first step's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import msgspec
import tomli_w
import yaml

from hetuflow_core.cli._plan import SCHEDULE_FIELDS, Current
from hetuflow_core.cli._spec import ScheduleSpec, unmark
from hetuflow_core.enums import JobStatus, ScheduleStatus, TriggerRule
from hetuflow_core.flow import Flow
from hetuflow_core.schedule import Schedule

__all__ = ["ExportError", "export_data", "to_toml", "to_yaml"]


class ExportError(Exception):
    """The objects cannot be written in the asked format."""


def _builtins(value: Any) -> Any:
    """Builtins for TOML and YAML: datetimes stay datetimes (both formats have them)."""
    return msgspec.to_builtins(value, builtin_types=(datetime,))


def non_default(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields of ``struct`` that differ from their defaults (nested Structs likewise), as builtins."""
    data: dict[str, Any] = {}
    for field in msgspec.structs.fields(struct):
        value = getattr(struct, field.name)
        if field.default is not msgspec.NODEFAULT and value == field.default:
            continue
        if field.default_factory is not msgspec.NODEFAULT and value == field.default_factory():
            continue
        if isinstance(value, msgspec.Struct):
            nested = non_default(value)
            if nested:
                data[field.name] = nested
            continue
        data[field.name] = _builtins(value)
    return data


def _schedule(schedule: Schedule) -> dict[str, Any]:
    data = non_default(ScheduleSpec(**{name: getattr(schedule, name) for name in SCHEDULE_FIELDS}))
    if schedule.status is ScheduleStatus.DISABLED:
        data["status"] = schedule.status.value
    return data


def _flow_namespace(flow: Flow, namespaces: dict[Any, tuple[str, str]]) -> str | None:
    _, managed, namespace = unmark(flow.description)
    if managed and namespace:
        return namespace
    first = namespaces.get(flow.steps[0].job_id) if flow.steps else None
    return first[0] if first else None


def export_data(namespace: str, current: Current, skipped: list[str]) -> dict[str, Any]:
    """The file contents for ``namespace``; flows that name a deleted job are left out (listed in
    ``skipped``)."""
    by_job: dict[Any, list[Schedule]] = {}
    for schedule in current.schedules:
        by_job.setdefault(schedule.job_id, []).append(schedule)
    jobs = []
    for job in current.jobs:
        if job.namespace != namespace:
            continue
        entry: dict[str, Any] = {"name": job.name}
        description = unmark(job.description)[0]
        if description:
            entry["description"] = description
        if job.status is JobStatus.DISABLED:
            entry["status"] = job.status.value
        entry["config"] = non_default(job.config)
        entry["schedules"] = [_schedule(schedule) for schedule in by_job.get(job.id, [])]
        jobs.append(entry)
    keys = {job.id: (job.namespace, job.name) for job in current.jobs}
    flows = []
    for flow in current.flows:
        if _flow_namespace(flow, keys) != namespace:
            continue
        steps = list(_steps(flow, keys, namespace))
        if len(steps) != len(flow.steps):
            skipped.append(f"flow {flow.name}: a step's job was deleted")
            continue
        entry = {"name": flow.name}
        description = unmark(flow.description)[0]
        if description:
            entry["description"] = description
        entry["steps"] = steps
        flows.append(entry)
    data: dict[str, Any] = {"namespace": namespace, "jobs": jobs}
    if flows:
        data["flows"] = flows
    return data


def _steps(flow: Flow, keys: dict[Any, tuple[str, str]], namespace: str) -> Iterator[dict[str, Any]]:
    for step in flow.steps:
        key = keys.get(step.job_id)
        if key is None:
            return
        entry: dict[str, Any] = {
            "name": step.name,
            "job": key[1] if key[0] == namespace else f"{key[0]}/{key[1]}",
        }
        if step.parameters:
            entry["parameters"] = step.parameters
        if step.depends_on:
            entry["depends_on"] = list(step.depends_on)
        if step.timeout_secs is not None:
            entry["timeout_secs"] = step.timeout_secs
        if step.trigger_rule is not TriggerRule.ALL_SUCCESS:
            entry["trigger_rule"] = step.trigger_rule.value
        yield entry


def to_toml(data: dict[str, Any]) -> str:
    """TOML text; `ExportError` for a value TOML cannot hold (``null`` inside parameters)."""
    try:
        return tomli_w.dumps(data, multiline_strings=True)
    except TypeError as exc:
        raise ExportError(f"cannot write TOML ({exc}; TOML has no null); use --format yaml") from None


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as literal blocks, which read like the script itself."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def to_yaml(data: dict[str, Any]) -> str:
    """YAML text."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
