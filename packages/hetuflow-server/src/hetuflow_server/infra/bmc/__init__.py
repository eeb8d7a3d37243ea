"""Business-model controllers: one class per table, one method per named SQL statement.

Every method takes the connection of the caller's transaction (``ModelManager.transaction()``) so a service
can combine several statements atomically, runs exactly one statement through ``infra.db``, and returns
hetuflow-core Structs. Missing rows raise ``NotFound``; conditional status changes return None (or fewer rows)
when the state did not allow them, and the service turns that into ``IllegalTransition``.
"""

from __future__ import annotations

from hetuflow_server.infra.bmc._task_records import (
    AgentProfile,
    DaemonRun,
    LateSlot,
    LiveRun,
    ManualRun,
    NewTask,
    TaskChange,
    TaskOrigin,
    TaskOutcome,
)
from hetuflow_server.infra.bmc.agent import AgentBeat, AgentBmc, AgentMsgBmc
from hetuflow_server.infra.bmc.audit import AuditBmc, NewAuditEntry
from hetuflow_server.infra.bmc.flow import FlowBmc, FlowRunBmc, LockedRun, NewFlow
from hetuflow_server.infra.bmc.instance import (
    AppliedReport,
    DispatchedLater,
    InstanceBmc,
    LiveAttempt,
    NewInstance,
    ReportRow,
)
from hetuflow_server.infra.bmc.job import JobBmc
from hetuflow_server.infra.bmc.log import LogBmc, LogQuota, NewLogChunk, StoredLogChunk
from hetuflow_server.infra.bmc.notification import ClaimedNotification, NotificationBmc
from hetuflow_server.infra.bmc.schedule import (
    DaemonVacancy,
    EventTarget,
    FlowEventTarget,
    GeneratableSchedule,
    MisfireSettings,
    ScheduleBmc,
)
from hetuflow_server.infra.bmc.server import LEADER_LEASE, Lease, LeaseBmc, ServerBmc, UptimeBmc
from hetuflow_server.infra.bmc.slot import NewSlot, SlotBmc
from hetuflow_server.infra.bmc.stats import BucketCount, StatsBmc
from hetuflow_server.infra.bmc.task import TaskBmc
from hetuflow_server.infra.bmc.token import TokenBmc

__all__ = [
    "LEADER_LEASE",
    "AgentBeat",
    "AgentBmc",
    "AgentMsgBmc",
    "AgentProfile",
    "AppliedReport",
    "AuditBmc",
    "BucketCount",
    "ClaimedNotification",
    "DaemonRun",
    "DaemonVacancy",
    "DispatchedLater",
    "EventTarget",
    "FlowBmc",
    "FlowEventTarget",
    "FlowRunBmc",
    "GeneratableSchedule",
    "InstanceBmc",
    "JobBmc",
    "LateSlot",
    "Lease",
    "LeaseBmc",
    "LiveAttempt",
    "LiveRun",
    "LockedRun",
    "LogBmc",
    "LogQuota",
    "ManualRun",
    "MisfireSettings",
    "NewAuditEntry",
    "NewFlow",
    "NewInstance",
    "NewLogChunk",
    "NewSlot",
    "NewTask",
    "NotificationBmc",
    "ReportRow",
    "ScheduleBmc",
    "ServerBmc",
    "SlotBmc",
    "StatsBmc",
    "StoredLogChunk",
    "TaskBmc",
    "TaskChange",
    "TaskOrigin",
    "TaskOutcome",
    "TokenBmc",
    "UptimeBmc",
]
