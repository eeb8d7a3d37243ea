"""Running dispatched attempts as process groups: limits, logs, metrics, reports."""

from __future__ import annotations

from hetuflow_agent.process.errors import CapacityExceeded, NotAccepting, SubmitRefused
from hetuflow_agent.process.execution import LogCallback, UpdateCallback
from hetuflow_agent.process.manager import ProcessManager
from hetuflow_agent.process.output import truncation_marker
from hetuflow_agent.process.settings import ProcessSettings

__all__ = [
    "CapacityExceeded",
    "LogCallback",
    "NotAccepting",
    "ProcessManager",
    "ProcessSettings",
    "SubmitRefused",
    "UpdateCallback",
    "truncation_marker",
]
