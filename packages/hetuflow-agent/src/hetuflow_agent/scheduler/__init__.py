"""Timing of dispatched work: the server clock estimate and the precise timer that fires tasks on it."""

from __future__ import annotations

from hetuflow_agent.scheduler.clock import Clock, ClockSample
from hetuflow_agent.scheduler.timer import PreciseTimer

__all__ = ["Clock", "ClockSample", "PreciseTimer"]
