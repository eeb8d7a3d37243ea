"""The ``hetuflow`` command group: global options, the login commands, and the boundary where every
failure becomes one line on stderr and an exit status.

Exit statuses: 0 success; 1 the command failed (server unreachable, refused, not found, invalid file);
2 the command line is wrong; ``run --wait`` exits with the task's own status instead (see ``_run``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from hetuflow_core.__about__ import __version__
from hetuflow_core.cli import _apply, _credentials, _cron, _daily, _run
from hetuflow_core.cli._context import DEFAULT_SERVER, Context
from hetuflow_core.cli._errors import EXIT_FAILURE, EXIT_USAGE, Failure, describe
from hetuflow_core.client import HetuflowClientError

__all__ = ["cli", "run"]

PROG = "hetuflow"
# Ctrl-C: the shell's convention for a program stopped by SIGINT.
EXIT_INTERRUPTED = 130


class _Root(click.Group):
    """The top group; turns client errors raised by any subcommand into `Failure`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HetuflowClientError as exc:
            server = ctx.obj.server if isinstance(ctx.obj, Context) else "the server"
            raise Failure(describe(exc, server)) from exc


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--server",
    envvar="HETUFLOW_SERVER",
    show_envvar=True,
    metavar="URL",
    help=f"hetuflow server (default: the one `hetuflow login` stored, else {DEFAULT_SERVER})",
)
@click.option(
    "--token",
    envvar="HETUFLOW_TOKEN",
    show_envvar=True,
    metavar="TOKEN",
    help="API token (default: the one `hetuflow login` stored)",
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, server: str | None, token: str | None) -> None:
    """Operate a hetuflow server: jobs, runs, logs, schedules, agents, and jobs kept as code.

    Start with `hetuflow login --server URL`, then `hetuflow jobs ls`.
    """
    try:
        context = Context.resolve(server, token, _credentials.credentials_path())
    except ValueError as exc:
        raise Failure(str(exc)) from None
    ctx.obj = context
    ctx.call_on_close(context.close)


@cli.command()
@click.option(
    "--server", "login_server", metavar="URL", help="server to log in to (default: the current one)"
)
@click.option("--token", "login_token", metavar="TOKEN", help="API token (asked for when not given)")
@click.pass_obj
def login(context: Context, login_server: str | None, login_token: str | None) -> None:
    """Check a token against the server and store both for later commands (a 0600 file)."""
    server = (login_server or context.server).rstrip("/")
    token = login_token or context.token or click.prompt("Token", hide_input=True)
    checked = Context(server=server, token=token, credentials_file=context.credentials_file)
    try:
        checked.client.list_jobs(limit=1)
    except HetuflowClientError as exc:
        raise Failure(f"not logged in: {describe(exc, server)}") from exc
    finally:
        checked.close()
    _credentials.save(context.credentials_file, _credentials.Credentials(server=server, token=token))
    context.err.print(f"logged in to {server}; stored in {context.credentials_file}", markup=False)


@cli.command()
@click.pass_obj
def logout(context: Context) -> None:
    """Forget the stored server and token."""
    if _credentials.forget(context.credentials_file):
        context.err.print(f"removed {context.credentials_file}", markup=False)
    else:
        context.err.print("not logged in", markup=False)


for command in (*_daily.commands, *_run.commands, _cron.cron, *_apply.commands):
    cli.add_command(command)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status. Every error is one line on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else PROG
        _error(f"{exc.format_message()} (see `{command} --help`)")
        return EXIT_USAGE
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except click.Abort:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Failure as exc:
        _error(str(exc))
        return exc.exit_code
    except HetuflowClientError as exc:  # raised outside a subcommand (none today); still one line
        _error(str(exc))
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


def _error(message: str) -> None:
    click.echo(f"{PROG}: {message}", err=True)
