"""hetuflow-core: the shared vocabulary of hetuflow.

Enums and msgspec models of the data model (jobs, schedules, tasks, instances, agents, flows), the
WebSocket protocol between server and agent (``hetuflow_core.protocol``), JSON Schema export
(``hetuflow_core.schema``), a typed REST client (``hetuflow_core.client``, needs the ``client``
extra) and the ``hetuflow`` command line (``hetuflow_core.cli``, needs the ``cli`` extra). Nothing here
knows about the server or the agent, so any tool can speak to hetuflow.
"""

from hetuflow_core.__about__ import __version__
from hetuflow_core.agent import Agent, AgentCapabilities, AgentMetrics, AgentUpdate, Server
from hetuflow_core.api import FieldError, Page, Problem, TaskFilter, TokenCreate, TokenInfo, TokenIssued
from hetuflow_core.enums import (
    AgentCommandKind,
    AgentStatus,
    BackoffKind,
    CommandKind,
    ConcurrencyPolicy,
    FlowRunStatus,
    InstanceStatus,
    JobStatus,
    LogStream,
    MisfirePolicy,
    ProtocolErrorCode,
    RoutingPolicy,
    ScheduleKind,
    ScheduleStatus,
    ServerStatus,
    SlotOutcome,
    TaskStatus,
    TokenScope,
    TriggerRule,
)
from hetuflow_core.flow import Flow, FlowCreate, FlowRun, FlowRunCreate, FlowRunStep, FlowStep, FlowUpdate
from hetuflow_core.ids import new_message_id, now_ms, uuid7
from hetuflow_core.job import Job, JobConfig, JobCreate, JobUpdate, ResourceLimits, RetryPolicy, Target
from hetuflow_core.protocol import PROTOCOL_VERSION, ProtocolError, decode, encode
from hetuflow_core.schedule import (
    Schedule,
    ScheduleCreate,
    SchedulePreview,
    SchedulePreviewRequest,
    ScheduleSlot,
    ScheduleUpdate,
)
from hetuflow_core.task import (
    InstanceMetrics,
    Task,
    TaskInstance,
    TaskLogEntry,
    TaskLogPage,
    TaskTrigger,
    TriggerResult,
    TriggerRun,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Agent",
    "AgentCapabilities",
    "AgentCommandKind",
    "AgentMetrics",
    "AgentStatus",
    "AgentUpdate",
    "BackoffKind",
    "CommandKind",
    "ConcurrencyPolicy",
    "FieldError",
    "Flow",
    "FlowCreate",
    "FlowRun",
    "FlowRunCreate",
    "FlowRunStatus",
    "FlowRunStep",
    "FlowStep",
    "FlowUpdate",
    "InstanceMetrics",
    "InstanceStatus",
    "Job",
    "JobConfig",
    "JobCreate",
    "JobStatus",
    "JobUpdate",
    "LogStream",
    "MisfirePolicy",
    "Page",
    "Problem",
    "ProtocolError",
    "ProtocolErrorCode",
    "ResourceLimits",
    "RetryPolicy",
    "RoutingPolicy",
    "Schedule",
    "ScheduleCreate",
    "ScheduleKind",
    "SchedulePreview",
    "SchedulePreviewRequest",
    "ScheduleSlot",
    "ScheduleStatus",
    "ScheduleUpdate",
    "Server",
    "ServerStatus",
    "SlotOutcome",
    "Target",
    "Task",
    "TaskFilter",
    "TaskInstance",
    "TaskLogEntry",
    "TaskLogPage",
    "TaskStatus",
    "TaskTrigger",
    "TokenCreate",
    "TokenInfo",
    "TokenIssued",
    "TokenScope",
    "TriggerResult",
    "TriggerRule",
    "TriggerRun",
    "__version__",
    "decode",
    "encode",
    "new_message_id",
    "now_ms",
    "uuid7",
]
