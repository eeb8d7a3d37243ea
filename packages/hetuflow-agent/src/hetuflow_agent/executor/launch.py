"""Turn a dispatched task into everything needed to start its process, or a reason why it cannot start.

``prepare_launch`` checks the config, builds the environment, resolves the executable on the *task's*
PATH (a job may set its own), picks the working directory, creates the per-attempt task directory and
writes the script body into it. Every problem becomes a ``LaunchError`` whose message is the ``error``
of the attempt's ``failed`` report, so a missing program or directory never crashes the agent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hetuflow_agent.errors import AgentError
from hetuflow_agent.executor import argv, capabilities, environment
from hetuflow_agent.executor.scratch import ScratchDirs
from hetuflow_core.enums import CommandKind
from hetuflow_core.protocol import ScheduledTaskData

__all__ = ["Launch", "LaunchError", "prepare_launch", "task_dir_for"]


class LaunchError(AgentError):
    """The task cannot be started; the message says why in words for the task's ``error`` field."""


@dataclass(frozen=True, slots=True)
class Launch:
    """A ready-to-start process: command line, complete environment, working and task directories."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    task_dir: Path


def task_dir_for(tasks_root: Path, task: ScheduledTaskData) -> Path:
    """The scratch directory of one attempt: ``<tasks_root>/<instance_id>``."""
    return tasks_root / str(task.instance_id)


def prepare_launch(
    task: ScheduledTaskData,
    *,
    executables: Mapping[CommandKind, str],
    base_env: Mapping[str, str],
    workdir: Path,
    resolve: Callable[[str, str | None], str | None] = capabilities.resolve_executable,
    scratch: ScratchDirs | None = None,
) -> Launch:
    """Prepare ``task`` for starting; raises ``LaunchError`` with the reason when it cannot be started.

    ``workdir`` is the agent's working directory: task directories live under ``workdir/tasks`` and a
    relative job ``workdir`` is taken relative to it. Creates the task directory as a side effect (the
    caller removes it after the attempt). ``resolve`` finds an executable on a PATH (a cache of
    ``capabilities.resolve_executable`` may be given); ``scratch`` makes the task directory (one that
    recycles finished attempts' directories may be given).
    """
    config = task.config
    problem = argv.check_runnable(config)
    if problem is not None:
        raise LaunchError(problem)
    env = environment.build_env(base_env, task)
    name = capabilities.executable_for(config.command, executables)
    executable = resolve(name, env.get("PATH", os.defpath))
    if executable is None:
        raise LaunchError(f"executable {name!r} not found on PATH")

    task_dir = task_dir_for(workdir / "tasks", task)
    cwd = task_dir
    if config.workdir is not None:
        cwd = workdir / config.workdir  # an absolute job workdir replaces the agent's
        if not cwd.is_dir():
            raise LaunchError(f"workdir {config.workdir!r} does not exist or is not a directory")
    if scratch is None:
        scratch = ScratchDirs(workdir / "tasks", keep=0)
    script_name = argv.SCRIPT_FILENAMES[config.command] if config.script is not None else None
    try:
        scratch.make(task_dir, script_name)
        script_path: str | None = None
        if config.script is not None and script_name is not None:
            script_path = os.path.join(task_dir, script_name)
            scratch.write_script(script_path, config.script.encode())
    except OSError as exc:
        raise LaunchError(f"cannot prepare task directory {task_dir}: {exc.strerror or exc}") from None
    return Launch(
        argv=argv.build_argv(config, executable, script_path),
        env=env,
        cwd=cwd,
        task_dir=task_dir,
    )
