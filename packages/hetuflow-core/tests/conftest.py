"""Hypothesis settings for the core's tests.

No deadline and no "too slow" health check: the machines that run the suite (CI, two-core dev boxes
running several suites at once) have timing noise far larger than these tests' real cost, and a property
either holds or not whatever the time it took. Example counts are set per test.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("hetuflow-core", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hetuflow-core")
