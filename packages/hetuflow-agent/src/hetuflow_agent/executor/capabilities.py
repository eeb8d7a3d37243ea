"""Which programs run each command kind, and which kinds this machine can run at all.

Every command kind is started through one executable (``bash``, ``python3``, ``uv``, ``node``, ``npx``,
``cargo``, ``java``); the agent's configuration may name another program or an absolute path for any
kind. An agent announces at registration only the kinds whose executable it finds, so the dispatcher
never sends it work it cannot start.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from hetuflow_core.enums import CommandKind

__all__ = [
    "DEFAULT_EXECUTABLES",
    "ExecutableCache",
    "detect_capabilities",
    "executable_for",
    "resolve_executable",
]

DEFAULT_EXECUTABLES: Final[Mapping[CommandKind, str]] = MappingProxyType(
    {
        CommandKind.BASH: "bash",
        # ``python3`` rather than the agent's own interpreter: jobs must not see the agent's virtualenv.
        CommandKind.PYTHON: "python3",
        CommandKind.UV: "uv",
        CommandKind.NODE: "node",
        CommandKind.NPX: "npx",
        CommandKind.CARGO: "cargo",
        CommandKind.JAVA: "java",
    }
)
"""The program started for each command kind unless the configuration says otherwise."""


def executable_for(kind: CommandKind, executables: Mapping[CommandKind, str]) -> str:
    """The configured program name or path for ``kind`` (the default when the mapping lacks it)."""
    return executables.get(kind) or DEFAULT_EXECUTABLES[kind]


def resolve_executable(name: str, path: str | None) -> str | None:
    """The absolute path of ``name`` searched on ``path`` (a PATH string), or None when not found.

    ``path=None`` searches the agent's own PATH. A name containing a slash is checked as given.
    """
    found = shutil.which(name, path=path)
    return os.path.abspath(found) if found is not None else None


class ExecutableCache:
    """``resolve_executable`` that remembers what it found for ``ttl_secs``.

    A PATH search is a few ``stat`` calls per directory, paid by every attempt; most attempts start the
    same few programs. Only hits are remembered, so a program installed meanwhile is found at once; a
    program removed meanwhile fails at start instead (with the reason), for at most ``ttl_secs``.
    Safe to call from several threads.
    """

    _MAX_ENTRIES: Final = 256

    def __init__(self, ttl_secs: float = 5.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_secs = ttl_secs
        self._clock = clock
        self._found: dict[tuple[str, str | None], tuple[str, float]] = {}

    def __call__(self, name: str, path: str | None) -> str | None:
        """The absolute path of ``name`` on ``path``, as ``resolve_executable`` returns it."""
        key = (name, path)
        now = self._clock()
        hit = self._found.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        found = resolve_executable(name, path)
        if found is None:
            self._found.pop(key, None)
        else:
            if len(self._found) >= self._MAX_ENTRIES:
                self._found.clear()  # many different PATHs: start over rather than grow
            self._found[key] = (found, now + self._ttl_secs)
        return found


def detect_capabilities(
    executables: Mapping[CommandKind, str], *, path: str | None = None
) -> list[CommandKind]:
    """The command kinds whose executable is found on ``path``, in declaration order."""
    return [
        kind
        for kind in CommandKind
        if resolve_executable(executable_for(kind, executables), path) is not None
    ]
