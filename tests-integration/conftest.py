"""Shared setup of the integration tests: the fixture plugins of every test subfolder (api, data, ha, ...).

The plugins and helper modules stay in this folder, which pytest puts on `sys.path` when it loads this
conftest, so tests in any subfolder import them by name; with pytest's default import mode, test module
names must be unique across the subfolders. Run the tests as `pytest -c pyproject.toml tests-integration`
from the repository root (or `nox -s tests`): pytest only accepts `pytest_plugins` from a conftest it loads
at startup. The PostgreSQL fixtures (`pg_admin_url`, `database_url`) come from the `pgfixture` plugin.
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
