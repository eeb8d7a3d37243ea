"""The command line of each command kind: a pure function of the job config and resolved paths.

Script bodies are written to a file in the task directory and passed as a path rather than inlined with
``-c``/``-e``: Linux limits one argument to 128 KiB (``MAX_ARG_STRLEN``) while a job's script may be
1 MiB, and a file also gives interpreters a real ``__file__`` and readable tracebacks. So ``bash`` runs
``bash <dir>/script.sh <args…>``, ``python`` runs ``python3 <dir>/script.py <args…>``, ``uv`` runs
``uv run <dir>/script.py <args…>`` (inline PEP 723 metadata is honoured), ``node`` runs
``node <dir>/script.js <args…>`` and ``java`` launches ``<dir>/Main.java`` as a single-file source
program. Without a script, the arguments are passed as given: ``bash <args…>``, ``python3 <args…>``,
``uv run <args…>``, ``node <args…>``, ``npx --yes <args…>``, ``cargo <args…>``, ``java <args…>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from hetuflow_core.enums import CommandKind
from hetuflow_core.job import JobConfig

__all__ = ["SCRIPT_FILENAMES", "build_argv", "check_runnable"]

SCRIPT_FILENAMES: Final[Mapping[CommandKind, str]] = MappingProxyType(
    {
        CommandKind.BASH: "script.sh",
        CommandKind.PYTHON: "script.py",
        CommandKind.UV: "script.py",
        CommandKind.NODE: "script.js",
        CommandKind.JAVA: "Main.java",
    }
)
"""The file a script body is written to, per kind; kinds missing here take no script."""


def check_runnable(config: JobConfig) -> str | None:
    """Why ``config`` cannot be turned into a command line, or None when it can."""
    kind = config.command
    if config.script is not None and kind not in SCRIPT_FILENAMES:
        return f"command {kind.value!r} does not take a script body; pass the command line in args"
    if config.script is None and not config.args:
        return f"nothing to run: command {kind.value!r} needs a script or args"
    return None


def build_argv(config: JobConfig, executable: str, script_path: str | None = None) -> list[str]:
    """The argv that runs ``config`` with ``executable``; ``script_path`` is where the script was written.

    Raises ``ValueError`` when ``check_runnable`` refuses the config or a script has no path.
    """
    problem = check_runnable(config)
    if problem is not None:
        raise ValueError(problem)
    script: list[str] = []
    if config.script is not None:
        if script_path is None:
            raise ValueError("a script body needs the path it was written to")
        script = [script_path]
    args = list(config.args)
    kind = config.command
    if kind is CommandKind.UV:
        return [executable, "run", *script, *args]
    if kind is CommandKind.NPX:
        # --yes: never stop at the "install this package?" prompt; nobody can answer it.
        return [executable, "--yes", *args]
    return [executable, *script, *args]
