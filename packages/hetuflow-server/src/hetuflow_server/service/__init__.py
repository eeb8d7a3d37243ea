"""Services: the operations of the server, between the endpoints (API, gateway, scheduler) and the BMCs.

Each service is a plain class over the ``ModelManager``; every public method is one transaction, validates its
input (raising ``InvalidInput`` with the JSON path of the bad field), and returns hetuflow-core Structs.
Changes that other servers must react to send a NOTIFY in the same transaction (``infra.notify``).
``Services`` bundles one of each for the application container.
"""

from __future__ import annotations

from uuid import UUID

from hetuflow_server.infra import bmc
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service._claim import AgentCapacity, Dispatch
from hetuflow_server.service._reconcile import Reconciliation
from hetuflow_server.service.agents import AgentService, ServerService
from hetuflow_server.service.audit import AuditService
from hetuflow_server.service.dispatch import DEFAULT_LOG_QUOTA, DispatchObserver, DispatchService
from hetuflow_server.service.events import EventService
from hetuflow_server.service.flows import FlowService
from hetuflow_server.service.jobs import JobService
from hetuflow_server.service.notifications import NotificationService
from hetuflow_server.service.reports import AgentReport, ReportOutcome, ReportResult
from hetuflow_server.service.schedules import ScheduleService
from hetuflow_server.service.stats import StatsService
from hetuflow_server.service.tasks import CancelOutcome, InstanceService, TaskService
from hetuflow_server.service.tokens import TokenRecordService
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

__all__ = [
    "AgentCapacity",
    "AgentReport",
    "AgentService",
    "AuditService",
    "CancelOutcome",
    "Dispatch",
    "DispatchObserver",
    "DispatchService",
    "EventService",
    "FlowService",
    "InstanceService",
    "JobService",
    "NotificationService",
    "Reconciliation",
    "ReportOutcome",
    "ReportResult",
    "ScheduleService",
    "ServerService",
    "Services",
    "StatsService",
    "TaskService",
    "TokenRecordService",
]


class Services:
    """One instance of every service over one ``ModelManager``.

    ``server_id`` (this server's id) is recorded on the instances it dispatches; ``observer`` (the server's
    metrics) hears about committed dispatches and reports; ``misfire_slack_secs`` is the lateness dispatch
    forgives on top of every grace period and start deadline (``scheduler.misfire_slack_secs``); ``log_quota``
    what each attempt may store of its log (``retention.attempt_log_max_bytes``, ``late_log_grace_secs``);
    ``notification_targets`` the names jobs may send notifications to (None: any name).
    """

    def __init__(
        self,
        db: ModelManager,
        *,
        server_id: UUID | None = None,
        observer: DispatchObserver | None = None,
        misfire_slack_secs: float = MISFIRE_SLACK_SECS,
        log_quota: bmc.LogQuota = DEFAULT_LOG_QUOTA,
        notification_targets: frozenset[str] | None = None,
    ) -> None:
        self.db = db
        self.jobs = JobService(db, notification_targets=notification_targets)
        self.schedules = ScheduleService(db)
        self.tasks = TaskService(db)
        self.instances = InstanceService(db)
        self.agents = AgentService(db, observer=observer)
        self.servers = ServerService(db)
        self.events = EventService(db)
        self.flows = FlowService(db)
        self.tokens = TokenRecordService(db)
        self.audit = AuditService(db)
        self.notifications = NotificationService(db)
        self.stats = StatsService(db)
        self.dispatch = DispatchService(
            db,
            server_id=server_id,
            observer=observer,
            misfire_slack_secs=misfire_slack_secs,
            log_quota=log_quota,
        )
