"""Jobs: what to run, where, and under which limits.

A job's ``JobConfig`` is copied into every task it produces (the config snapshot), so a task runs with
the settings that were current when it was planned even if the job is edited later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from uuid import UUID

import msgspec

from hetuflow_core.enums import BackoffKind, CommandKind, ConcurrencyPolicy, JobStatus, RoutingPolicy
from hetuflow_core.notification import NotifyRule
from hetuflow_core.types import AgentId, Labels, Name, Namespace, Priority, Seconds

__all__ = [
    "SECRET_MASK",
    "Job",
    "JobConfig",
    "JobCreate",
    "JobUpdate",
    "ResourceLimits",
    "RetryPolicy",
    "Target",
]

EnvName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(?!\n)$", max_length=256)]
EnvVars = Annotated[
    dict[EnvName, str],
    msgspec.Meta(max_length=256, description="Extra environment variables for the process"),
]
SecretEnvNames = Annotated[
    list[EnvName],
    msgspec.Meta(
        max_length=256,
        description=(
            "Names of env entries that are secret: stored and sent to the agent, shown as *** in every answer"
            " of the API; sending *** back for one keeps the stored value"
        ),
    ),
]

SECRET_MASK: Final = "***"
"""What the API shows in place of a secret env value; sent back in an update, it keeps the stored value."""


class RetryPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How often and how soon a failed, timed-out or lost attempt is tried again."""

    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    backoff: BackoffKind = BackoffKind.EXPONENTIAL
    base_secs: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 1.0
    max_secs: Annotated[float, msgspec.Meta(ge=0, le=604_800)] = 300.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1, description="Random fraction added to a delay")] = 0.1

    def delay_secs(self, retry_number: int, rand: float = 0.0) -> float:
        """Delay before retry ``retry_number`` (1-based); ``rand`` in [0, 1) scales the jitter."""
        if self.backoff is BackoffKind.FIXED:
            base = self.base_secs
        else:
            # 2.0 ** 1024 raises OverflowError; past 2 ** 1023 every delay is capped anyway.
            base = self.base_secs * (2.0 ** min(max(retry_number - 1, 0), 1023))
        base = min(base, self.max_secs)
        return base * (1.0 + self.jitter * rand)


class ResourceLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Limits the agent enforces on the whole process tree of one attempt."""

    memory_mb: Annotated[int, msgspec.Meta(ge=1, le=1_048_576)] | None = None
    cpu_secs: Annotated[int, msgspec.Meta(ge=1, le=31_536_000)] | None = None
    max_output_bytes: Annotated[int, msgspec.Meta(ge=0, le=1_073_741_824)] | None = None


class Target(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a job may run: agents whose labels include all of ``labels``.

    ``routing`` ``any`` runs each task on one matching agent; ``broadcast`` makes one task per matching
    online agent when the task is created, each pinned to its agent. ``agent_id`` pins a task (or every task
    of a job) to that one agent: it runs there and nowhere else, waiting while that agent is away.
    """

    labels: Labels = {}
    routing: RoutingPolicy = RoutingPolicy.ANY
    agent_id: Annotated[AgentId, msgspec.Meta(description="Run only on this agent")] | None = None


class JobConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The command and its execution settings.

    ``command`` picks the program. ``bash``, ``python``, ``uv``, ``node`` and ``java`` take either a
    ``script`` body (the agent writes it to a file in the task's directory and runs it: ``bash``,
    ``python``, ``uv run``, ``node``, or ``java`` single-file source launch, with ``args`` after it) or a
    command line in ``args``; ``npx`` and ``cargo`` take ``args`` only.
    """

    command: CommandKind
    args: Annotated[list[Annotated[str, msgspec.Meta(max_length=65_536)]], msgspec.Meta(max_length=1024)] = []
    script: Annotated[str, msgspec.Meta(max_length=1_048_576)] | None = None
    env: EnvVars = {}
    secret_env: SecretEnvNames | msgspec.UnsetType = msgspec.UNSET
    """Left out of the encoded config unless set, so that agents and servers that predate it accept it."""
    workdir: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    timeout_secs: Seconds | None = None
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    limits: ResourceLimits = msgspec.field(default_factory=ResourceLimits)
    target: Target = msgspec.field(default_factory=Target)
    concurrency: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    priority: Priority = 0
    notify: Annotated[
        list[NotifyRule],
        msgspec.Meta(max_length=16, description="Notification targets for the outcomes of the job's tasks"),
    ] = []

    @property
    def secret_names(self) -> frozenset[str]:
        """The names of the secret env entries."""
        return frozenset(()) if self.secret_env is msgspec.UNSET else frozenset(self.secret_env)

    def redacted(self) -> JobConfig:
        """This config as readers see it: the value of every secret env entry replaced by ``SECRET_MASK``."""
        secret = self.secret_names
        if not secret:
            return self
        env = {name: SECRET_MASK if name in secret else value for name, value in self.env.items()}
        return msgspec.structs.replace(self, env=env)


class Job(msgspec.Struct, kw_only=True):
    """A stored job as the API returns it."""

    id: UUID
    namespace: str
    name: str
    description: str
    status: JobStatus
    config: JobConfig
    created_by: str | None
    created_at: datetime
    updated_by: str | None
    updated_at: datetime


class JobCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/jobs``."""

    name: Name
    namespace: Namespace = "default"
    description: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    status: JobStatus = JobStatus.ENABLED
    config: JobConfig


class JobUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PATCH /api/v1/jobs/{id}``: only the fields given change."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Annotated[str, msgspec.Meta(max_length=4096)] | msgspec.UnsetType = msgspec.UNSET
    status: JobStatus | msgspec.UnsetType = msgspec.UNSET
    config: JobConfig | msgspec.UnsetType = msgspec.UNSET
