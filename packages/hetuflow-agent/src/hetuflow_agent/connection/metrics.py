"""Host figures for heartbeats: CPU, memory, load, and the agent's own slot usage.

Each call is cheap (``psutil.cpu_percent`` without an interval measures since the previous call, so
heartbeats report the average over one heartbeat interval without ever blocking the event loop).
"""

from __future__ import annotations

import os

import psutil

from hetuflow_core.agent import AgentMetrics

__all__ = ["host_metrics"]


def host_metrics(running: int, free_slots: int) -> AgentMetrics:
    """Current load of this host plus the agent's running count and free slots."""
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return AgentMetrics(
        running=max(running, 0),
        free_slots=max(free_slots, 0),
        cpu_percent=max(float(psutil.cpu_percent(interval=None)), 0.0),
        memory_percent=min(max(float(psutil.virtual_memory().percent), 0.0), 100.0),
        load1=max(load1, 0.0),
    )
