"""Which programs run each command kind, and which kinds this machine can run at all.

Every command kind is started through one executable (``bash``, ``python3``, ``uv``, ``node``, ``npx``,
``cargo``, ``java``); the agent's configuration may name another program or an absolute path for any
kind. An agent announces at registration only the kinds whose executable it finds, so the dispatcher
never sends it work it cannot start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from hetuflow_core.enums import CommandKind

__all__ = ["DEFAULT_EXECUTABLES", "detect_capabilities", "executable_for", "resolve_executable"]

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


def detect_capabilities(
    executables: Mapping[CommandKind, str], *, path: str | None = None
) -> list[CommandKind]:
    """The command kinds whose executable is found on ``path``, in declaration order."""
    return [
        kind
        for kind in CommandKind
        if resolve_executable(executable_for(kind, executables), path) is not None
    ]
