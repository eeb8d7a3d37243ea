"""The environment of a task's process: agent environment, then job environment, then hetuflow's own.

The agent's environment reaches tasks without the agent's own settings (``HETUFLOW_AGENT__*``, its
token among them) and without the variables its ``task_env_exclude`` names: a task's output is readable by
any read token, so whatever a task can print must not include the agent's credentials. The ``HETUFLOW_*``
variables come last so a job cannot spoof its own identity; everything else a job sets (``PATH`` included)
overrides the agent's value.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

import msgspec

from hetuflow_core.protocol import ScheduledTaskData

__all__ = ["AGENT_SETTINGS_PATTERN", "build_env", "rfc3339", "task_variables", "without_agent_settings"]

AGENT_SETTINGS_PATTERN: Final = "HETUFLOW_AGENT__*"
"""The agent's own configuration variables, never passed on to a task."""

_json = msgspec.json.Encoder()


def without_agent_settings(environ: Mapping[str, str], exclude: Iterable[str] = ()) -> dict[str, str]:
    """``environ`` less the agent's settings and every variable matching one of ``exclude`` (names or
    shell-style patterns such as ``AWS_*``, matched case-sensitively)."""
    patterns = (AGENT_SETTINGS_PATTERN, *exclude)
    return {
        name: value
        for name, value in environ.items()
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with a ``Z`` suffix (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # msgspec writes the same form the protocol carries, e.g. 2025-01-31T12:00:00.250000Z.
    return _json.encode(moment.astimezone(UTC)).decode()[1:-1]


def task_variables(task: ScheduledTaskData) -> dict[str, str]:
    """The ``HETUFLOW_*`` variables that tell a process which attempt it is."""
    return {
        "HETUFLOW_TASK_ID": str(task.task_id),
        "HETUFLOW_INSTANCE_ID": str(task.instance_id),
        "HETUFLOW_JOB_ID": str(task.job_id),
        "HETUFLOW_ATTEMPT": str(task.attempt),
        "HETUFLOW_SCHEDULED_AT": rfc3339(task.scheduled_at),
        "HETUFLOW_PARAMS": _json.encode(task.parameters).decode(),
    }


def build_env(base: Mapping[str, str], task: ScheduledTaskData) -> dict[str, str]:
    """The complete environment for ``task``: ``base``, overridden by the job's env and the task variables."""
    env = dict(base)
    env.update(task.config.env)
    env.update(task_variables(task))
    return env
