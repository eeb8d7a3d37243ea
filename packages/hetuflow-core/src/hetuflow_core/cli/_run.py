"""Running things and watching them: ``run`` (trigger a job, optionally wait or follow its output),
``tasks`` (list, show, cancel, retry) and ``logs`` (an attempt's output, or a task's latest attempt).
"""

from __future__ import annotations

import time
from contextlib import ExitStack, closing
from uuid import UUID

import click

from hetuflow_core.api import Page, TaskFilter
from hetuflow_core.cli._context import Context
from hetuflow_core.cli._errors import Failure
from hetuflow_core.cli._logstream import LogStream, StreamEnd
from hetuflow_core.cli._output import Column, all_pages, output_option, show_list, show_one
from hetuflow_core.cli._resolve import as_uuid, find_job, parse_parameters
from hetuflow_core.cli._watch import (
    EXIT_TIMEOUT,
    WaitExpired,
    exit_status,
    follow_task,
    wait_task,
    write_chunk,
)
from hetuflow_core.client import Client, NotFoundError
from hetuflow_core.enums import TaskStatus
from hetuflow_core.task import Task

__all__ = ["commands"]

TASK_COLUMNS = (
    Column("ID", lambda task: task.id),
    Column("JOB", lambda task: task.job_id),
    Column("STATUS", lambda task: task.status),
    Column("ATTEMPT", lambda task: task.attempt),
    Column("AGENT", lambda task: task.agent_id),
    Column("SCHEDULED", lambda task: task.scheduled_at),
    Column("COMPLETED", lambda task: task.completed_at),
)


@click.command()
@click.argument("job")
@click.option("-n", "--namespace", metavar="NS", help="namespace of a job given by name (default: default)")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="a parameter for HETUFLOW_PARAMS (repeatable); a value that reads as JSON is that JSON value",
)
@click.option("--wait", is_flag=True, help="wait for the task to end and exit with its status")
@click.option("-f", "--follow", is_flag=True, help="print the task's output as it runs (implies --wait)")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECS",
    help=f"give up waiting after SECS (exit status {EXIT_TIMEOUT})",
)
@click.pass_obj
def run(
    context: Context,
    job: str,
    namespace: str | None,
    params: tuple[str, ...],
    wait: bool,
    follow: bool,
    wait_timeout: float | None,
) -> int:
    """Run JOB now; prints the new task's id.

    With --wait the exit status is the task's: 0 when it succeeded, the process's exit code when it failed,
    124 when it timed out, 1 otherwise.
    """
    client = context.client
    found = find_job(client, job, namespace)
    task_ids = client.trigger_job(found.id, parse_parameters(params)).task_ids
    if not (wait or follow):
        for task_id in task_ids:
            context.out.print(str(task_id), markup=False)
        return 0
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    status = 0
    with ExitStack() as stack:
        stream = stack.enter_context(closing(LogStream(context.server, context.token))) if follow else None
        for task_id in task_ids:
            context.err.print(f"task {task_id} of {found.namespace}/{found.name}", markup=False)
            try:
                task = _await(context, client, stream, task_id, deadline)
            except WaitExpired as expired:
                context.err.print(f"gave up waiting: {expired}", markup=False)
                return EXIT_TIMEOUT
            code = exit_status(client, task)
            context.err.print(_summary(task, code), markup=False)
            status = status or code
    return status


def _await(
    context: Context, client: Client, stream: LogStream | None, task_id: UUID, deadline: float | None
) -> Task:
    if stream is not None:

        def attempt_started(task: Task) -> None:
            if task.attempt > 1:
                context.err.print(f"--- attempt {task.attempt} on {task.agent_id}", markup=False)

        return follow_task(client, stream, task_id, deadline=deadline, attempt_started=attempt_started)
    if not context.err.is_terminal:
        return wait_task(client, task_id, deadline=deadline)
    with context.err.status(f"task {task_id}: waiting") as spinner:
        return wait_task(
            client,
            task_id,
            deadline=deadline,
            seen=lambda task: spinner.update(f"task {task_id}: {task.status} on {task.agent_id or '-'}"),
        )


def _summary(task: Task, code: int) -> str:
    where = f" on {task.agent_id}" if task.agent_id else ""
    error = f": {task.error}" if task.error and task.status is not TaskStatus.SUCCEEDED else ""
    return f"task {task.id} {task.status}{where} after {task.attempt} attempt(s), exit status {code}{error}"


@click.group()
def tasks() -> None:
    """List tasks; show, cancel or retry one."""


@tasks.command("ls")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in TaskStatus]),
    help="only tasks in this state (repeatable)",
)
@click.option("--job", metavar="JOB", help="only tasks of this job (id, name or namespace/name)")
@click.option("-n", "--namespace", metavar="NS", help="namespace of --job given by name")
@click.option("--agent", metavar="ID", help="only tasks on this agent")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@output_option
@click.pass_obj
def tasks_ls(
    context: Context,
    statuses: tuple[str, ...],
    job: str | None,
    namespace: str | None,
    agent: str | None,
    limit: int,
    output: str,
) -> None:
    """List tasks matching every filter given."""
    client = context.client
    job_id = None if job is None else find_job(client, job, namespace).id
    base = TaskFilter(status=list(statuses), job_id=job_id, agent_id=agent, limit=min(limit, 1000))

    def page(cursor: str | None) -> Page[Task]:
        base.cursor = cursor
        return client.list_tasks(base)

    show_list(context, list(all_pages(page, limit)), TASK_COLUMNS, output)


@tasks.command("show")
@click.argument("task_id")
@output_option
@click.pass_obj
def tasks_show(context: Context, task_id: str, output: str) -> None:
    """Show one task."""
    show_one(context, context.client.get_task(task_id), output)


@tasks.command("cancel")
@click.argument("task_id")
@click.pass_obj
def tasks_cancel(context: Context, task_id: str) -> None:
    """Cancel a task; a running attempt is killed on its agent."""
    task = context.client.cancel_task(task_id)
    context.err.print(f"task {task.id}: {task.status}", markup=False)


@tasks.command("retry")
@click.argument("task_id")
@click.pass_obj
def tasks_retry(context: Context, task_id: str) -> None:
    """Run a finished task again as a new attempt."""
    task = context.client.retry_task(task_id)
    context.err.print(f"task {task.id}: {task.status} (attempt {task.attempt})", markup=False)


@click.command()
@click.argument("instance_or_task")
@click.option("-f", "--follow", is_flag=True, help="keep printing as the output is stored, until it ends")
@click.pass_obj
def logs(context: Context, instance_or_task: str, follow: bool) -> None:
    """Print the output of an attempt, or of a task's latest attempt (stdout to stdout, stderr to stderr).

    With -f on a task, every attempt is followed until the task ends.
    """
    client = context.client
    ident = as_uuid(instance_or_task)
    if ident is None:
        raise Failure(f"{instance_or_task!r} is not an attempt or task id")
    try:
        instance_id: UUID | None = client.get_instance(ident).id
        task_id = None
    except NotFoundError:
        task = client.get_task(ident)
        instance_id, task_id = task.instance_id, task.id
    if follow:
        stream = LogStream(context.server, context.token)
        try:
            if task_id is not None:
                follow_task(client, stream, task_id)
            elif instance_id is not None:
                _print_stream(stream, instance_id)
        finally:
            stream.close()
        return
    if instance_id is None:
        raise Failure(f"task {ident} has not started yet (no attempt); use -f to wait for it")
    _print_stored(client, instance_id)


def _print_stream(stream: LogStream, instance_id: UUID) -> None:
    for item in stream.follow(instance_id):
        if not isinstance(item, StreamEnd):
            write_chunk(item.stream, item.content)


def _print_stored(client: Client, instance_id: UUID) -> None:
    after = 0
    while True:
        page = client.get_instance_logs(instance_id, after_seq=after, limit=1000)
        for item in page.items:
            write_chunk(item.stream, item.content)
        if not page.items or page.next_after_seq == after:
            return
        after = page.next_after_seq


commands = (run, tasks, logs)
