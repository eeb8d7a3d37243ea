"""Tunables of task execution, as one typed struct the agent's configuration can embed.

Every field has a production default; the bounds are enforced when the struct is decoded from TOML,
environment or JSON (``msgspec.convert``), the way the rest of the agent's configuration is.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from hetuflow_agent.executor.capabilities import DEFAULT_EXECUTABLES
from hetuflow_core.enums import CommandKind

__all__ = ["ProcessSettings"]

_KIB = 1024
_MIB = 1024 * 1024


def _default_executables() -> dict[CommandKind, str]:
    return dict(DEFAULT_EXECUTABLES)


class ProcessSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How the process manager starts, watches and reports task processes."""

    executables: dict[CommandKind, Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]] = (
        msgspec.field(default_factory=_default_executables)
    )
    """Program (name searched on PATH, or a path) per command kind; missing kinds use the default."""

    kill_grace_secs: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    """Between SIGTERM and SIGKILL to the process group on timeout, cancel and shutdown."""

    keep_task_dirs: bool = False
    """Keep ``<workdir>/tasks/<instance_id>`` after an attempt (for debugging) instead of removing it."""

    max_output_bytes: Annotated[int, msgspec.Meta(ge=0, le=1024 * _MIB)] = 16 * _MIB
    """Output cap of an attempt whose job sets none (``limits.max_output_bytes``), both streams together."""

    output_tail_bytes: Annotated[int, msgspec.Meta(ge=0, le=_MIB)] = 64 * _KIB
    """How much of the end of the output the final report carries in ``output``."""

    log_chunk_bytes: Annotated[int, msgspec.Meta(ge=1, le=_MIB)] = 64 * _KIB
    """A stream's buffer is sent as a log chunk once it holds this much."""

    log_flush_secs: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.05
    """…or this long after its first unsent byte arrived, whichever comes first."""

    sample_interval_secs: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.1
    """Period of the process-tree sampling behind the memory and CPU limits and the metrics."""

    pipe_drain_secs: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 2.0
    """After the process group is gone, how long to wait for its pipes to close (a process that left
    the group with ``setsid`` may still hold them) before the output is considered complete."""

    task_env_exclude: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=256)]], msgspec.Meta(max_length=256)
    ] = []
    """Variables (names or shell-style patterns) of the agent's environment kept from tasks, besides the
    agent's own ``HETUFLOW_AGENT__*`` settings, which never reach a task."""

    remember_finished: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 10_000
    """How many finished instance ids are remembered so a re-sent dispatch never runs twice."""
