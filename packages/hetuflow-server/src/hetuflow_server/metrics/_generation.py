"""The task generator as the application runs it: each cycle's outcome is counted into the server's metrics.

`ObservedGenerator` is a `scheduler.generator.Generator` whose ``cycle`` reports what it did (tasks made,
slots missed or deduplicated, schedules expired, a lost lease) or that it failed. The generator's loop calls
``cycle`` for every pass, so every cycle the leader runs is counted; tests that call ``cycle`` on a plain
``Generator`` count nothing.
"""

from __future__ import annotations

from hetuflow_server.infra.db import ModelManager
from hetuflow_server.metrics._registry import ServerMetrics
from hetuflow_server.scheduler import generator
from hetuflow_server.scheduler.leader import Leadership
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

__all__ = ["ObservedGenerator"]


class ObservedGenerator(generator.Generator):
    """A `Generator` counting its cycles into ``metrics``."""

    def __init__(
        self,
        metrics: ServerMetrics,
        db: ModelManager,
        leadership: Leadership,
        *,
        horizon_secs: float,
        interval_secs: float | None = None,
        misfire_slack_secs: float = MISFIRE_SLACK_SECS,
    ) -> None:
        super().__init__(
            db,
            leadership,
            horizon_secs=horizon_secs,
            interval_secs=interval_secs,
            misfire_slack_secs=misfire_slack_secs,
        )
        self._metrics = metrics

    async def cycle(self) -> generator.CycleReport:
        try:
            report = await super().cycle()
        except Exception:
            self._metrics.generation_cycle(None)
            raise
        self._metrics.generation_cycle(report)
        return report
