"""What the apply files declare, all files together: jobs by namespace and name, flows by name, each with
the file and field path it came from (so a later problem can still name its line).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

from hetuflow_core.cli._files import FieldPath, LoadedFile, Source, SpecError
from hetuflow_core.cli._spec import FlowSpec, JobSpec

__all__ = ["DEFAULT_NAMESPACE", "Declared", "Desired", "JobKey", "desired_from"]

JobKey = tuple[str, str]
DEFAULT_NAMESPACE: Final = "default"


@dataclasses.dataclass(frozen=True)
class Declared:
    """Where an object is declared: its file and its field path there (``("jobs", 2)``)."""

    source: Source
    field: FieldPath

    def where(self, *more: str | int, message: str) -> str:
        return self.source.where((*self.field, *more), message)


@dataclasses.dataclass
class Desired:
    """Everything the files declare, by identity."""

    jobs: dict[JobKey, tuple[JobSpec, Declared]]
    flows: dict[str, tuple[FlowSpec, str, Declared]]
    namespaces: list[str]


def desired_from(files: Iterable[LoadedFile], namespace: str | None) -> Desired:
    """The union of the files' declarations; `SpecError` for a job or flow declared twice."""
    desired = Desired({}, {}, [])
    problems = []
    for loaded in files:
        space = namespace or (loaded.spec.namespace or DEFAULT_NAMESPACE)
        if space not in desired.namespaces:
            desired.namespaces.append(space)
        for i, job in enumerate(loaded.spec.jobs):
            here = Declared(loaded.source, ("jobs", i))
            if (space, job.name) in desired.jobs:
                other = desired.jobs[space, job.name][1]
                problems.append(
                    here.where(
                        "name", message=f"job {space}/{job.name} is also declared in {other.source.path}"
                    )
                )
            desired.jobs.setdefault((space, job.name), (job, here))
        for i, flow in enumerate(loaded.spec.flows):
            here = Declared(loaded.source, ("flows", i))
            if flow.name in desired.flows:
                other = desired.flows[flow.name][2]
                problems.append(
                    here.where("name", message=f"flow {flow.name} is also declared in {other.source.path}")
                )
            desired.flows.setdefault(flow.name, (flow, space, here))
    if problems:
        raise SpecError(problems)
    return desired
