"""Fixtures and helpers for the scheduling tests: leaders, generators, and reading slots and slot tasks.

- ``lease_name`` (function): a lease name of the test's own, so tests sharing a module database never contend.
- ``make_leader(**kw)`` (function): a ``Leadership`` on the test's pool and lease (not stepped yet).
- ``make_generator(leader, **kw)`` (function): a ``Generator`` on the test's pool.
- ``kit`` (function): all of the above with ``services``, ``model_manager`` and ``make_job`` in one `Kit`.
- ``quiet_schedules`` (function): disables every schedule of the database after the test, so the next test's
  cycles only find its own work.
- ``slot_tasks(db, schedule_id)`` / ``slot_records(db, schedule_id)``: a schedule's tasks and slot records,
  oldest slot first, read from the database.
- REST helpers for the end-to-end tests over a ``Pipeline``: ``create_schedule``, ``disable``,
  ``api_slot_records`` and ``schedule_tasks`` (by slot time, each slot at most once), ``at``,
  ``first_second_after`` and ``wait_until``.

Load it from ``conftest.py`` with ``pytest_plugins = [..., "schedulingfixtures"]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import pytest
from dbfixtures import MakeJob
from pipelinefixtures import Pipeline

from hetuflow_core.enums import TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.schedule import ScheduleSlot
from hetuflow_server.infra import ModelManager, bmc
from hetuflow_server.scheduler.generator import Generator
from hetuflow_server.scheduler.leader import Leadership
from hetuflow_server.service import Services

_leases = itertools.count()


class SlotTask(msgspec.Struct, kw_only=True, frozen=True):
    """A schedule's task as these tests look at it."""

    id: UUID
    scheduled_at: datetime
    status: TaskStatus
    attempt: int
    priority: int
    parameters: dict[str, Any]
    config: dict[str, Any]
    error: str | None


async def slot_tasks(db: ModelManager, schedule_id: UUID) -> list[SlotTask]:
    """Every task of the schedule, oldest slot first."""
    async with db.transaction() as conn:
        cur = await conn.execute(
            "SELECT id, scheduled_at, status, attempt, priority, parameters, config, error"
            " FROM sched_task WHERE schedule_id = %s ORDER BY scheduled_at",
            (schedule_id,),
        )
        return msgspec.convert(await cur.fetchall(), list[SlotTask])


async def slot_records(db: ModelManager, schedule_id: UUID) -> list[ScheduleSlot]:
    """Every slot record of the schedule, oldest first."""
    async with db.transaction() as conn:
        records = await bmc.SlotBmc.select_page(conn, schedule_id, before=None, limit=1_000_000)
    return records[::-1]


async def set_cursor(db: ModelManager, schedule_id: UUID, at: datetime | None) -> None:
    """Move a schedule's generation cursor by hand (as if generation had stopped there)."""
    async with db.transaction() as conn:
        await conn.execute("UPDATE sched_schedule SET generated_until = %s WHERE id = %s", (at, schedule_id))


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def create_schedule(pipeline: Pipeline, job_id: str, **fields: Any) -> dict[str, Any]:
    return dict(pipeline.call("POST", "/schedules", json={"job_id": job_id, **fields}, expect=201))


def disable(pipeline: Pipeline, schedule_id: str) -> None:
    pipeline.call("POST", f"/schedules/{schedule_id}/disable")


def _by_slot(pipeline: Pipeline, path: str, what: str, **params: Any) -> dict[datetime, dict[str, Any]]:
    """Every item of a paged list by its ``scheduled_at``, checking that no slot appears twice."""
    items: dict[datetime, dict[str, Any]] = {}
    cursor = None
    while True:
        page = pipeline.call(
            "GET", path, params={**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        )
        for item in page["items"]:
            slot = at(item["scheduled_at"])
            assert slot not in items, f"slot {slot} has two {what}"
            items[slot] = item
        if (cursor := page["next_cursor"]) is None:
            return items


def api_slot_records(pipeline: Pipeline, schedule_id: str) -> dict[datetime, dict[str, Any]]:
    """Every slot record of the schedule by slot time (``GET /api/v1/schedules/{id}/slots``)."""
    return _by_slot(pipeline, f"/schedules/{schedule_id}/slots", "records")


def schedule_tasks(pipeline: Pipeline, schedule_id: str) -> dict[datetime, dict[str, Any]]:
    """Every task of the schedule by slot time (``GET /api/v1/tasks?schedule_id=``)."""
    return _by_slot(pipeline, "/tasks", "tasks", schedule_id=schedule_id)


def first_second_after(moment: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(moment.timestamp()) + 1, UTC)


def wait_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


MakeLeader = Callable[..., Leadership]
MakeGenerator = Callable[..., Generator]


@dataclasses.dataclass
class Kit:
    """What a generation test works with: the services and pool of its database, and factories."""

    services: Services
    db: ModelManager
    make_job: MakeJob
    leader: MakeLeader
    generator: MakeGenerator
    lease_name: str

    async def leading_generator(self, **kwargs: Any) -> Generator:
        """A generator whose (new) leader holds the test's lease; ``kwargs`` go to ``generator``."""
        leader = self.leader()
        assert await leader.step()
        return self.generator(leader, **kwargs)


@pytest.fixture
def lease_name() -> str:
    """A lease of this test's own."""
    return f"test-leader-{next(_leases)}"


@pytest.fixture
def make_leader(model_manager: ModelManager, lease_name: str) -> MakeLeader:
    """``make_leader(holder=None, lease_secs=30, db=None)``: a Leadership on the test's lease."""

    def make(
        *, holder: UUID | None = None, lease_secs: float = 30.0, db: ModelManager | None = None
    ) -> Leadership:
        return Leadership(db or model_manager, holder or uuid7(), lease_secs=lease_secs, name=lease_name)

    return make


@pytest.fixture
def make_generator(model_manager: ModelManager) -> MakeGenerator:
    """``make_generator(leader, horizon_secs=5, **kw)``: a Generator on the test's pool."""

    def make(leader: Leadership, *, horizon_secs: float = 5.0, **kwargs: Any) -> Generator:
        db = kwargs.pop("db", model_manager)
        return Generator(db, leader, horizon_secs=horizon_secs, **kwargs)

    return make


@pytest.fixture
def kit(
    services: Services,
    model_manager: ModelManager,
    make_job: MakeJob,
    make_leader: MakeLeader,
    make_generator: MakeGenerator,
    lease_name: str,
) -> Kit:
    """The generation fixtures in one (see `Kit`)."""
    return Kit(services, model_manager, make_job, make_leader, make_generator, lease_name)


@pytest.fixture
async def quiet_schedules(model_manager: ModelManager) -> AsyncIterator[None]:
    """After the test, no schedule of the database generates anything any more."""
    yield
    async with model_manager.transaction() as conn:
        await conn.execute("UPDATE sched_schedule SET status = 'disabled' WHERE status = 'enabled'")
