"""The daily verbs on what is stored: ``jobs``, ``schedules``, ``flows`` and ``events``.

Listings read every page (``--limit`` caps them) and print a table or JSON (``-o json``); ``show`` prints
one object. Jobs are named by id, ``NAME`` (with ``-n NAMESPACE``) or ``NAMESPACE/NAME``; flows by id or name.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import click
import msgspec

from hetuflow_core.cli import _fleet
from hetuflow_core.cli._context import Context
from hetuflow_core.cli._errors import Usage
from hetuflow_core.cli._output import PAGE_LIMIT, Column, all_pages, output_option, show_list, show_one
from hetuflow_core.cli._resolve import find_flow, find_job, parse_parameters
from hetuflow_core.client import Client

__all__ = ["commands"]

_NAMESPACE = click.option(
    "-n", "--namespace", metavar="NS", help="namespace of a job given by name (default: default)"
)
_LIMIT = click.option("--limit", type=click.IntRange(min=1), help="show at most this many")
_PARAMS = click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="a parameter (repeatable); a value that reads as JSON is that JSON value",
)

JOB_COLUMNS = (
    Column("ID", lambda job: job.id),
    Column("NAMESPACE", lambda job: job.namespace),
    Column("NAME", lambda job: job.name),
    Column("STATUS", lambda job: job.status),
    Column("COMMAND", lambda job: job.config.command),
    Column("UPDATED", lambda job: job.updated_at),
)
SCHEDULE_COLUMNS = (
    Column("ID", lambda s: s.id),
    Column("JOB", lambda s: s.job_id or f"flow {s.flow_id}"),
    Column("KIND", lambda s: s.kind),
    Column("RULE", lambda s: s.cron_expression or s.interval_secs or s.event_name or s.start_time),
    Column("TIMEZONE", lambda s: s.timezone),
    Column("STATUS", lambda s: s.status),
    Column("FIRED", lambda s: s.fire_count),
)
SLOT_COLUMNS = (
    Column("SCHEDULED", lambda slot: slot.scheduled_at),
    Column("OUTCOME", lambda slot: slot.outcome),
    Column("TASK", lambda slot: slot.task_id or (slot.flow_run_id and f"flow run {slot.flow_run_id}")),
    Column("DETAIL", lambda slot: slot.detail),
)
FLOW_COLUMNS = (
    Column("ID", lambda flow: flow.id),
    Column("NAME", lambda flow: flow.name),
    Column("STATUS", lambda flow: flow.status),
    Column("STEPS", lambda flow: ", ".join(step.name for step in flow.steps)),
    Column("UPDATED", lambda flow: flow.updated_at),
)
RUN_COLUMNS = (
    Column("ID", lambda run: run.id),
    Column("STATUS", lambda run: run.status),
    Column("STEPS", lambda run: ", ".join(f"{step.name}={step.status}" for step in run.steps)),
    Column("CREATED", lambda run: run.created_at),
    Column("COMPLETED", lambda run: run.completed_at),
)


@click.group()
def jobs() -> None:
    """List, show, enable, disable and delete jobs."""


@jobs.command("ls")
@_NAMESPACE
@_LIMIT
@output_option
@click.pass_obj
def jobs_ls(context: Context, namespace: str | None, limit: int | None, output: str) -> None:
    """List jobs (of one namespace with -n)."""
    client = context.client
    items = all_pages(
        lambda cursor: client.list_jobs(namespace=namespace, cursor=cursor, limit=PAGE_LIMIT), limit
    )
    show_list(context, list(items), JOB_COLUMNS, output)


@jobs.command("show")
@click.argument("job")
@_NAMESPACE
@output_option
@click.pass_obj
def jobs_show(context: Context, job: str, namespace: str | None, output: str) -> None:
    """Show one job."""
    show_one(context, find_job(context.client, job, namespace), output)


def _job_action(name: str, summary: str, act: Callable[[Client, UUID], object]) -> click.Command:
    @click.command(name, help=summary)
    @click.argument("job")
    @_NAMESPACE
    @click.pass_obj
    def action(context: Context, job: str, namespace: str | None) -> None:
        found = find_job(context.client, job, namespace)
        act(context.client, found.id)
        context.err.print(f"{name}d job {found.namespace}/{found.name} ({found.id})", markup=False)

    return action


jobs.add_command(
    _job_action("enable", "Let the job's schedules produce work again.", lambda c, i: c.enable_job(i))
)
jobs.add_command(
    _job_action(
        "disable", "Stop the job's schedules (its planned future tasks go).", lambda c, i: c.disable_job(i)
    )
)
jobs.add_command(
    _job_action(
        "delete",
        "Delete the job: its schedules stop, its open tasks are cancelled.",
        lambda c, i: c.delete_job(i),
    )
)


@click.group()
def schedules() -> None:
    """List schedules, show one, and its record of due slots."""


@schedules.command("ls")
@click.option("--job", metavar="JOB", help="only the schedules of this job")
@_NAMESPACE
@_LIMIT
@output_option
@click.pass_obj
def schedules_ls(
    context: Context, job: str | None, namespace: str | None, limit: int | None, output: str
) -> None:
    """List schedules (of one job with --job)."""
    client = context.client
    job_id = None if job is None else find_job(client, job, namespace).id
    items = all_pages(
        lambda cursor: client.list_schedules(job_id=job_id, cursor=cursor, limit=PAGE_LIMIT), limit
    )
    show_list(context, list(items), SCHEDULE_COLUMNS, output)


@schedules.command("show")
@click.argument("schedule_id")
@click.option(
    "--next",
    "count",
    type=click.IntRange(0, 1000),
    default=5,
    show_default=True,
    help="also list this many next fire times",
)
@output_option
@click.pass_obj
def schedules_show(context: Context, schedule_id: str, count: int, output: str) -> None:
    """Show one schedule and its next fire times."""
    schedule = context.client.get_schedule(schedule_id)
    show_one(context, schedule, output)
    if count and output == "table":
        for fire in context.client.next_fire_times(schedule.id, count).fire_times:
            context.out.print(f"next  {fire}", markup=False)


@schedules.command("slots")
@click.argument("schedule_id")
@_LIMIT
@output_option
@click.pass_obj
def schedules_slots(context: Context, schedule_id: str, limit: int | None, output: str) -> None:
    """The due slots of a schedule, latest first, and what became of each."""
    client = context.client
    pages = all_pages(
        lambda cursor: client.list_schedule_slots(schedule_id, cursor=cursor, limit=PAGE_LIMIT), limit or 100
    )
    show_list(context, list(pages), SLOT_COLUMNS, output)


@click.group()
def flows() -> None:
    """List flows, show one, start a run, list and show runs, cancel or retry one."""


@flows.command("ls")
@_LIMIT
@output_option
@click.pass_obj
def flows_ls(context: Context, limit: int | None, output: str) -> None:
    """List flows."""
    client = context.client
    items = all_pages(lambda cursor: client.list_flows(cursor=cursor, limit=PAGE_LIMIT), limit)
    show_list(context, list(items), FLOW_COLUMNS, output)


@flows.command("show")
@click.argument("flow")
@output_option
@click.pass_obj
def flows_show(context: Context, flow: str, output: str) -> None:
    """Show one flow."""
    show_one(context, find_flow(context.client, flow), output)


@flows.command("run")
@click.argument("flow")
@_PARAMS
@click.pass_obj
def flows_run(context: Context, flow: str, params: tuple[str, ...]) -> None:
    """Start a run of a flow; prints the run's id."""
    found = find_flow(context.client, flow)
    run = context.client.run_flow(found.id, parse_parameters(params))
    context.out.print(str(run.id), markup=False)


@flows.command("runs")
@click.argument("flow")
@_LIMIT
@output_option
@click.pass_obj
def flows_runs(context: Context, flow: str, limit: int | None, output: str) -> None:
    """List the runs of a flow, latest first, with each step's status."""
    client = context.client
    flow_id = find_flow(client, flow).id
    pages = all_pages(
        lambda cursor: client.list_flow_runs(flow_id, order="desc", cursor=cursor, limit=PAGE_LIMIT),
        limit or 100,
    )
    show_list(context, list(pages), RUN_COLUMNS, output)


@flows.command("run-show")
@click.argument("run_id")
@output_option
@click.pass_obj
def flows_run_show(context: Context, run_id: str, output: str) -> None:
    """Show one run by its id (its flow need not be named, nor still exist), with each step's task."""
    show_one(context, context.client.get_flow_run_by_id(run_id), output)


@flows.command("cancel")
@click.argument("flow")
@click.argument("run_id")
@click.pass_obj
def flows_cancel(context: Context, flow: str, run_id: str) -> None:
    """Cancel a run: pending steps skipped, running ones killed; prints its status."""
    run = context.client.cancel_flow_run(find_flow(context.client, flow).id, run_id)
    context.out.print(f"{run.id} {run.status}", markup=False)


@flows.command("retry")
@click.argument("flow")
@click.argument("run_id")
@click.pass_obj
def flows_retry(context: Context, flow: str, run_id: str) -> None:
    """Run a failed or cancelled run again from the steps that did not succeed; prints its status."""
    run = context.client.retry_flow_run(find_flow(context.client, flow).id, run_id)
    context.out.print(f"{run.id} {run.status}", markup=False)


@click.group()
def events() -> None:
    """Send events to the jobs that listen for them."""


@events.command("send")
@click.argument("name")
@click.argument("payload", required=False, metavar="[JSON]")
@click.pass_obj
def events_send(context: Context, name: str, payload: str | None) -> None:
    """Fire event NAME with a JSON object as payload; prints the ids of the tasks it made."""
    try:
        body = {} if payload is None else msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise Usage(f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Usage("payload must be a JSON object")
    result = context.client.fire_event(name, body)
    for task_id in result.task_ids:
        context.out.print(str(task_id), markup=False)
    context.err.print(f"event {name}: {len(result.task_ids)} task(s)", markup=False)


commands = (jobs, schedules, flows, events, *_fleet.commands)
