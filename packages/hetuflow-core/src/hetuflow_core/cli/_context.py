"""The state one ``hetuflow`` invocation shares between its commands: where the server is, the token, the
REST client, and the two consoles (results on stdout, progress and diagnostics on stderr).

Settings come from, lowest first: the login file, ``HETUFLOW_SERVER``/``HETUFLOW_TOKEN``, then
``--server``/``--token``. The client is made on first use, so ``hetuflow cron --help`` or a usage error
never needs a server.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

from rich.console import Console

from hetuflow_core.cli import _credentials
from hetuflow_core.client import Client

__all__ = ["DEFAULT_SERVER", "Context"]

DEFAULT_SERVER: Final = "http://127.0.0.1:8900"
REQUEST_TIMEOUT_SECS: Final = 30.0
# Without a terminal, tables are not cut to 80 columns: scripts get every cell whole.
_PIPE_WIDTH: Final = 100_000


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=_PIPE_WIDTH)
    return console


@dataclasses.dataclass
class Context:
    """Settings of this invocation and the objects built from them."""

    server: str
    token: str | None
    credentials_file: Path
    out: Console = dataclasses.field(default_factory=lambda: _console(stderr=False))
    err: Console = dataclasses.field(default_factory=lambda: _console(stderr=True))
    _client: Client | None = None

    @classmethod
    def resolve(cls, server: str | None, token: str | None, credentials_file: Path) -> Context:
        """Flags (or their environment variables, which click has read) over the login file."""
        stored = _credentials.load(credentials_file)
        return cls(
            server=(server or stored.server or DEFAULT_SERVER).rstrip("/"),
            token=token or stored.token,
            credentials_file=credentials_file,
        )

    @property
    def client(self) -> Client:
        """The REST client, made on first use."""
        if self._client is None:
            self._client = Client(self.server, self.token, timeout=REQUEST_TIMEOUT_SECS)
        return self._client

    def close(self) -> None:
        """Close the client's connections, if one was made."""
        if self._client is not None:
            self._client.close()
            self._client = None
