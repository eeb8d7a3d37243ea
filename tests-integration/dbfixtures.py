"""Database fixtures for the data-layer tests: a migrated database per module, a pool, the services.

- ``migrated_database_url`` (module): the module's fresh database (``database_url``), fully migrated.
- ``model_manager`` (function): an open ``ModelManager`` on it, closed after the test.
- ``services`` (function): ``Services`` over that manager.
- ``make_job`` (function): a coroutine factory creating a job through the service, for tests that need one.

Load it from ``conftest.py`` with ``pytest_plugins = [..., "dbfixtures"]``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hetuflow_core.job import Job, JobConfig, JobCreate
from hetuflow_server.infra import ModelManager, migrate
from hetuflow_server.service import Services

_names = itertools.count()


@pytest.fixture(scope="module")
def migrated_database_url(database_url: str) -> str:
    """The module's database with the whole schema applied."""
    asyncio.run(migrate(database_url))
    return database_url


@pytest.fixture
async def model_manager(migrated_database_url: str) -> AsyncIterator[ModelManager]:
    """An open pool on the migrated database."""
    manager = ModelManager(migrated_database_url, min_size=1, max_size=4)
    await manager.open()
    try:
        yield manager
    finally:
        await manager.close()


@pytest.fixture
def services(model_manager: ModelManager) -> Services:
    """Every service over the test's pool."""
    return Services(model_manager)


MakeJob = Callable[..., Awaitable[Job]]


@pytest.fixture
def make_job(services: Services) -> MakeJob:
    """``await make_job(**config_fields)``: a new enabled bash job with a unique name."""

    async def make(*, namespace: str = "default", name: str | None = None, **config: Any) -> Job:
        fields: dict[str, Any] = {"command": "bash", "script": "true", **config}
        job_name = name or f"job-{next(_names)}"
        return await services.jobs.create(
            JobCreate(name=job_name, namespace=namespace, config=JobConfig(**fields)), by="tests"
        )

    return make
