"""``hetuflow apply``, ``export`` and ``schema``: jobs, schedules and flows kept in files.

``apply`` refuses invalid files before anything changes: first every check that needs no server (types,
each kind's fields, commands, flow DAGs, names declared twice, steps naming unknown jobs), then the server's
own checks of each schedule to create or change, through the preview endpoint (cron syntax, time zone,
window), so a bad cron expression stops the whole apply, not the second half of it. Then it prints the
plan and makes the changes in order, with a progress bar on a terminal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final, TypeVar
from uuid import UUID

import click
import msgspec
from rich.progress import Progress

from hetuflow_core.cli._context import Context
from hetuflow_core.cli._desired import JobKey, desired_from
from hetuflow_core.cli._errors import Failure, describe
from hetuflow_core.cli._export import ExportError, export_data, to_toml, to_yaml
from hetuflow_core.cli._files import LoadedFile, SpecError, load_file
from hetuflow_core.cli._output import PAGE_LIMIT, all_pages
from hetuflow_core.cli._plan import SCHEDULE_FIELDS, Change, Current, Plan, make_plan
from hetuflow_core.cli._spec import FlowSpec, ScheduleSpec, file_schema, mark
from hetuflow_core.client import Client, HetuflowClientError, ValidationError
from hetuflow_core.enums import ScheduleKind, ScheduleStatus
from hetuflow_core.flow import FlowCreate, FlowStep, FlowUpdate
from hetuflow_core.schedule import ScheduleCreate, SchedulePreviewRequest

__all__ = ["commands"]

_SIGNS: Final = {"create": "+", "update": "~", "delete": "-"}
T = TypeVar("T")
_CLOCK_KINDS: Final = frozenset({ScheduleKind.CRON, ScheduleKind.INTERVAL, ScheduleKind.ONCE})


def read_current(client: Client) -> Current:
    """Every live job, schedule and flow on the server (three paged listings)."""
    return Current(
        jobs=list(all_pages(lambda cursor: client.list_jobs(cursor=cursor, limit=PAGE_LIMIT))),
        schedules=list(all_pages(lambda cursor: client.list_schedules(cursor=cursor, limit=PAGE_LIMIT))),
        flows=list(all_pages(lambda cursor: client.list_flows(cursor=cursor, limit=PAGE_LIMIT))),
    )


def _load(paths: tuple[Path, ...]) -> list[LoadedFile]:
    files, problems = [], []
    for path in paths:
        try:
            files.append(load_file(path))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return files


def _server_checks(client: Client, plan: Plan) -> list[str]:
    """The server's verdict on each schedule to create or change, as located problems."""
    problems = []
    for change in plan.changes:
        if change.kind != "schedule" or change.action == "delete" or change.declared is None:
            continue
        spec = change.schedule
        if spec is None:
            continue
        # Event and daemon schedules have no fire times; an interval rule with their zone and window gets
        # the server to check those fields all the same.
        kind = spec.kind if spec.kind in _CLOCK_KINDS else ScheduleKind.INTERVAL
        request = SchedulePreviewRequest(
            kind=kind,
            cron_expression=spec.cron_expression,
            timezone=spec.timezone,
            interval_secs=spec.interval_secs if spec.kind in _CLOCK_KINDS else 1,
            start_time=spec.start_time,
            end_time=spec.end_time,
            max_count=spec.max_count,
            count=1,
        )
        try:
            client.preview_schedule(request)
        except ValidationError as exc:
            for error in exc.problem.errors or []:
                field = error.path.removeprefix("$.").split(".")[0]
                problems.append(change.declared.where(field, message=error.message))
    return problems


def _print_plan(context: Context, plan: Plan, verbose: bool) -> None:
    for change in plan.changes:
        context.out.print(f"{_SIGNS[change.action]} {change.action} {change.label}", markup=False)
        for detail in change.details:
            context.out.print(f"    {detail}", markup=False)
    if verbose:
        for label in plan.unchanged:
            context.out.print(f"= unchanged {label}", markup=False)
    if plan.left_alone:
        context.err.print(
            f"left alone: {', '.join(plan.left_alone)} (managed, declared in no file; --prune deletes them)",
            markup=False,
        )


def _counts(plan: Plan, verb: str = "") -> str:
    parts = ", ".join(f"{plan.count(action)} {verb}{action}{'' if verb else 'd'}" for action in _SIGNS)
    return (
        f"{len(plan.changes)} {'to change' if verb else 'changed'} ({parts}), {len(plan.unchanged)} unchanged"
    )


def _schedule_create(job_id: UUID, spec: ScheduleSpec) -> ScheduleCreate:
    fields = {name: getattr(spec, name) for name in SCHEDULE_FIELDS}
    status = ScheduleStatus.ENABLED if spec.status is msgspec.UNSET else spec.status
    return ScheduleCreate(job_id=job_id, status=status, **fields)


def _flow_create(spec: FlowSpec, namespace: str, ids: dict[JobKey, UUID]) -> FlowCreate:
    steps = []
    for step in spec.steps:
        space, _, name = step.job.rpartition("/")
        job_id = ids[space or namespace, name]
        steps.append(
            FlowStep(
                name=step.name,
                job_id=job_id,
                parameters=step.parameters,
                depends_on=step.depends_on,
                timeout_secs=step.timeout_secs,
                trigger_rule=step.trigger_rule,
            )
        )
    return FlowCreate(name=spec.name, description=mark(spec.description, namespace), steps=steps)


def _need(value: T | None) -> T:
    if value is None:
        raise AssertionError("a change without what it needs")  # a bug of the planner
    return value


def _make(client: Client, change: Change, ids: dict[JobKey, UUID]) -> None:
    """Make one change (ids: job key → id, filled as jobs are created)."""
    kind, action = change.kind, change.action
    if kind == "job" and action == "create":
        ids[_need(change.job)] = client.create_job(_need(change.job_create)).id
    elif kind == "job" and action == "update":
        client.update_job(_need(change.target), _need(change.job_update))
    elif kind == "job":
        client.delete_job(_need(change.target))
    elif kind == "schedule" and action == "create":
        client.create_schedule(_schedule_create(ids[_need(change.job)], _need(change.schedule)))
    elif kind == "schedule" and action == "update":
        client.update_schedule(_need(change.target), _need(change.schedule_update))
    elif kind == "schedule":
        client.delete_schedule(_need(change.target))
    elif kind == "flow" and action == "create":
        client.create_flow(_flow_create(_need(change.flow), _need(change.namespace), ids))
    elif kind == "flow" and action == "update":
        steps = _flow_create(_need(change.flow), _need(change.namespace), ids).steps
        update = FlowUpdate(description=_need(change.flow_description), steps=steps)
        client.update_flow(_need(change.target), update)
    else:
        client.delete_flow(_need(change.target))


def _execute(context: Context, plan: Plan, current: Current) -> None:
    ids: dict[JobKey, UUID] = {(job.namespace, job.name): job.id for job in current.jobs}
    progress = Progress(console=context.err, transient=True, disable=not context.err.is_terminal)
    with progress:
        bar = progress.add_task("applying", total=len(plan.changes))
        for done, change in enumerate(plan.changes):
            progress.update(bar, description=change.label)
            try:
                _make(context.client, change, ids)
            except HetuflowClientError as exc:
                raise Failure(
                    f"{change.action} {change.label} failed: {describe(exc, context.server)}; "
                    f"{done} of {len(plan.changes)} changes were made before it (apply again to finish)"
                ) from exc
            progress.advance(bar)


@click.command()
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="a TOML or YAML file (repeatable)",
)
@click.option("-n", "--namespace", metavar="NS", help="apply every file to this namespace")
@click.option("--dry-run", is_flag=True, help="show the changes, make none")
@click.option("--prune", is_flag=True, help="delete managed objects of the namespaces that no file declares")
@click.option("-v", "--verbose", is_flag=True, help="also list what is unchanged")
@click.pass_obj
def apply(
    context: Context,
    files: tuple[Path, ...],
    namespace: str | None,
    dry_run: bool,
    prune: bool,
    verbose: bool,
) -> None:
    """Make the server hold the jobs, schedules and flows the files declare."""
    try:
        desired = desired_from(_load(files), namespace)
        current = read_current(context.client)
        plan = make_plan(desired, current, prune=prune)
        problems = _server_checks(context.client, plan)
        if problems:
            raise SpecError(problems)
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(f"hetuflow: {problem}", err=True)
        raise Failure(f"nothing was changed ({len(exc.problems)} problem(s) in the files)") from None
    _print_plan(context, plan, verbose)
    if dry_run:
        context.out.print(f"dry run: {_counts(plan, 'to ')}; nothing was changed", markup=False)
        return
    _execute(context, plan, current)
    context.out.print(_counts(plan), markup=False)


@click.command()
@click.option("-n", "--namespace", default="default", show_default=True, metavar="NS")
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="write here instead of stdout (the extension picks the format)",
)
@click.option("--format", "fmt", type=click.Choice(["toml", "yaml"]), help="default: from --file, else toml")
@click.pass_obj
def export(context: Context, namespace: str, path: Path | None, fmt: str | None) -> None:
    """Write the namespace's jobs, schedules and flows in the apply file format."""
    if fmt is None:
        fmt = "yaml" if path is not None and path.suffix.lower() in {".yaml", ".yml"} else "toml"
    skipped: list[str] = []
    data = export_data(namespace, read_current(context.client), skipped)
    for line in skipped:
        context.err.print(f"left out {line}", markup=False)
    try:
        text = to_toml(data) if fmt == "toml" else to_yaml(data)
    except ExportError as exc:
        raise Failure(str(exc)) from None
    if path is None:
        sys.stdout.write(text)
    else:
        path.write_text(text, encoding="utf-8")
        context.err.print(f"wrote {len(data['jobs'])} job(s) to {path}", markup=False)


@click.command()
def schema() -> None:
    """Print the JSON Schema of apply files (for editor completion)."""
    click.echo(json.dumps(file_schema(), indent=2))


commands = (apply, export, schema)
