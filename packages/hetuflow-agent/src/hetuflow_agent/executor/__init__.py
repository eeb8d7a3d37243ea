"""Turning a dispatched task into a process launch: command lines, environment, directories, capabilities."""

from __future__ import annotations

from hetuflow_agent.executor.argv import SCRIPT_FILENAMES, build_argv, check_runnable
from hetuflow_agent.executor.capabilities import (
    DEFAULT_EXECUTABLES,
    ExecutableCache,
    detect_capabilities,
    executable_for,
    resolve_executable,
)
from hetuflow_agent.executor.environment import build_env, rfc3339, task_variables
from hetuflow_agent.executor.launch import Launch, LaunchError, prepare_launch, task_dir_for

__all__ = [
    "DEFAULT_EXECUTABLES",
    "SCRIPT_FILENAMES",
    "ExecutableCache",
    "Launch",
    "LaunchError",
    "build_argv",
    "build_env",
    "check_runnable",
    "detect_capabilities",
    "executable_for",
    "prepare_launch",
    "resolve_executable",
    "rfc3339",
    "task_dir_for",
    "task_variables",
]
