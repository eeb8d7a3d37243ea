"""Shared setup of the integration tests (real PostgreSQL, later real server and agent processes).

The PostgreSQL fixtures (`pg_admin_url`, `database_url`) come from the `pgfixture` plugin next to this file.
Run these tests as `pytest -c pyproject.toml tests-integration` from the repository root (or `nox -s tests`):
pytest only accepts `pytest_plugins` from a conftest it loads at startup.
"""

from __future__ import annotations

pytest_plugins = [
    "pgfixture",
    "dbfixtures",
    "apifixtures",
    "serverfixtures",
    "pipelinefixtures",
    "schedulingfixtures",
]
