"""Every enumerated value of the hetuflow data model and protocol.

Values are lower-case strings; they are what the database stores (text columns with CHECK
constraints), what the REST API and the WebSocket protocol carry, and what users type.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AgentCommandKind",
    "AgentStatus",
    "BackoffKind",
    "CommandKind",
    "ConcurrencyPolicy",
    "FlowRunStatus",
    "InstanceStatus",
    "JobStatus",
    "LogStream",
    "MisfirePolicy",
    "NotificationEvent",
    "NotificationStatus",
    "ProtocolErrorCode",
    "RoutingPolicy",
    "ScheduleKind",
    "ScheduleStatus",
    "ServerStatus",
    "SlotOutcome",
    "TaskStatus",
    "TokenScope",
    "TriggerRule",
]


class JobStatus(StrEnum):
    """Whether a job's schedules produce work."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class ScheduleStatus(StrEnum):
    """Life of a schedule; ``expired`` once its end time or max count has passed."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    EXPIRED = "expired"


class ScheduleKind(StrEnum):
    """How a schedule decides when its job runs."""

    CRON = "cron"
    INTERVAL = "interval"
    ONCE = "once"
    EVENT = "event"
    DAEMON = "daemon"
    FLOW = "flow"


class TaskStatus(StrEnum):
    """States of one planned execution: ``pending`` → ``dispatched`` → ``running`` → a final state, through
    ``waiting_retry`` back to ``pending`` while retries remain; the server's transition table allows no other
    move."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    WAITING_RETRY = "waiting_retry"

    @property
    def is_final(self) -> bool:
        """True for states a task never leaves."""
        return self in _FINAL_TASK_STATES


_FINAL_TASK_STATES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}
)


class InstanceStatus(StrEnum):
    """States of one attempt of a task on one agent: ``dispatched`` → ``running`` → a final state (``lost``
    when the agent went silent or refused it). An attempt is never retried; its task gets a new one."""

    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_final(self) -> bool:
        """True for states an instance never leaves."""
        return self not in (InstanceStatus.DISPATCHED, InstanceStatus.RUNNING)


class AgentStatus(StrEnum):
    """Availability of an agent for new work."""

    ONLINE = "online"
    OFFLINE = "offline"
    DRAINING = "draining"
    DISABLED = "disabled"


class ServerStatus(StrEnum):
    """Whether a server process is alive."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class CommandKind(StrEnum):
    """The program an agent starts for a job."""

    BASH = "bash"
    UV = "uv"
    PYTHON = "python"
    NODE = "node"
    NPX = "npx"
    CARGO = "cargo"
    JAVA = "java"


class ConcurrencyPolicy(StrEnum):
    """What happens when a schedule's slot comes due while its previous run still goes."""

    ALLOW = "allow"
    FORBID = "forbid"
    REPLACE = "replace"


class MisfirePolicy(StrEnum):
    """What happens to slots that came due while no server could run them."""

    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


class BackoffKind(StrEnum):
    """Growth of the delay between retries."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"


class RoutingPolicy(StrEnum):
    """Which of the matching agents run a task: one of them, or every one."""

    ANY = "any"
    BROADCAST = "broadcast"


class LogStream(StrEnum):
    """Output stream a log chunk came from."""

    STDOUT = "stdout"
    STDERR = "stderr"


class TokenScope(StrEnum):
    """What a token allows: an agent connection, reading, or everything."""

    AGENT = "agent"
    READ = "read"
    ADMIN = "admin"


class FlowRunStatus(StrEnum):
    """State of one run of a flow (a DAG of job steps)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TriggerRule(StrEnum):
    """When a flow step may start, given how the steps it depends on ended."""

    ALL_SUCCESS = "all_success"
    """Every dependency succeeded (the default); the step is skipped as soon as one cannot."""
    ALL_DONE = "all_done"
    """Every dependency ended, whatever its outcome: a cleanup step."""
    ONE_FAILED = "one_failed"
    """At least one dependency failed: an alert step; skipped when all ended and none failed."""


class SlotOutcome(StrEnum):
    """What became of one due fire slot of a schedule."""

    RAN = "ran"
    SKIPPED_OVERLAP = "skipped_overlap"
    MISSED = "missed"
    DEDUPLICATED = "deduplicated"


class NotificationEvent(StrEnum):
    """Outcomes a job can name notification targets for."""

    FAILED = "failed"
    SUCCEEDED = "succeeded"
    MISSED = "missed"
    """A fire slot of one of the job's schedules was missed."""
    RETRYING = "retrying"
    """An attempt failed and the task waits for its next one."""
    OFFLINE = "offline"
    """The agent running one of the job's attempts went offline (the attempt is lost)."""


class NotificationStatus(StrEnum):
    """Where the delivery of one notification to one target stands."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AgentCommandKind(StrEnum):
    """Orders the server sends to an agent outside of dispatch."""

    CANCEL = "cancel"
    KILL = "kill"
    DRAIN = "drain"
    SHUTDOWN = "shutdown"
    UPDATE_LABELS = "update_labels"


class ProtocolErrorCode(StrEnum):
    """Stable codes of protocol errors, carried by ``ProtocolError`` and the ``error`` frame."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"
    VERSION_MISMATCH = "version_mismatch"
    UNEXPECTED = "unexpected"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal"
