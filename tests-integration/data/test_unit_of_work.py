"""``ModelManager.unit_of_work``: the transactions opened inside it join it, commit with it or not at all."""

from __future__ import annotations

import asyncio

import pytest

from hetuflow_server.errors import Conflict, HetuflowError
from hetuflow_server.infra import ModelManager, db
from hetuflow_server.infra.sql import Query

_CREATE = Query("create", "CREATE TABLE IF NOT EXISTS uow_probe (v integer PRIMARY KEY)")
_INSERT = Query("insert", "INSERT INTO uow_probe (v) VALUES (%(v)s::integer)")
_VALUES = Query("values", "SELECT coalesce(array_agg(v ORDER BY v), '{}') AS vs FROM uow_probe")
_CLEAR = Query("clear", "DELETE FROM uow_probe")
_BACKEND = Query("backend", "SELECT pg_backend_pid() AS pid")


async def _values(manager: ModelManager) -> list[int]:
    async with manager.transaction() as conn:
        row = await db.fetch_one(conn, _VALUES)
    assert row is not None
    return list(row["vs"])


@pytest.fixture
async def probe(model_manager: ModelManager) -> ModelManager:
    async with model_manager.transaction() as conn:
        await db.execute(conn, _CREATE)
        await db.execute(conn, _CLEAR)
    return model_manager


async def test_inner_transactions_commit_with_the_unit(probe: ModelManager) -> None:
    committed: list[str] = []
    async with probe.unit_of_work() as outer:
        async with probe.transaction() as conn:
            assert conn is outer
            await db.execute(conn, _INSERT, {"v": 1})
        async with probe.autocommit() as conn:
            assert conn is outer
            await db.execute(conn, _INSERT, {"v": 2})
        probe.after_commit(lambda: committed.append("after"))
        assert committed == []
        # Another task (another request) sees nothing yet: nothing committed.
        assert await asyncio.create_task(_values(probe)) == []
    assert committed == ["after"]
    assert await _values(probe) == [1, 2]


async def _failing_unit(probe: ModelManager, committed: list[str]) -> None:
    async with probe.unit_of_work():
        async with probe.transaction() as conn:
            await db.execute(conn, _INSERT, {"v": 1})
        probe.after_commit(lambda: committed.append("after"))
        # A failing inner block is a savepoint: caught, the unit goes on; uncaught, all of it goes.
        with pytest.raises(Conflict):
            async with probe.transaction() as conn:
                await db.execute(conn, _INSERT, {"v": 1})
        async with probe.transaction() as conn:
            await db.execute(conn, _INSERT, {"v": 2})
        async with probe.transaction() as conn:
            await db.execute(conn, _INSERT, {"v": 2})


async def test_an_error_rolls_back_the_whole_unit(probe: ModelManager) -> None:
    committed: list[str] = []
    with pytest.raises(Conflict):
        await _failing_unit(probe, committed)
    assert committed == []
    assert await _values(probe) == []


async def test_tasks_spawned_inside_get_their_own_transactions(probe: ModelManager) -> None:
    async with probe.unit_of_work() as outer:
        row = await db.fetch_one(outer, _BACKEND)

        async def other_backend() -> int:
            async with probe.transaction() as conn:
                found = await db.fetch_one(conn, _BACKEND)
            assert found is not None
            return int(found["pid"])

        assert row is not None
        assert await asyncio.create_task(other_backend()) != row["pid"]
        with pytest.raises(RuntimeError, match="do not nest"):
            async with probe.unit_of_work():
                pass


async def test_another_pool_does_not_join(probe: ModelManager, migrated_database_url: str) -> None:
    other = ModelManager(migrated_database_url, min_size=1, max_size=1)
    await other.open()
    try:
        async with probe.unit_of_work() as outer, other.transaction() as conn:
            assert conn is not outer
    finally:
        await other.close()


async def _queue_then_fail(probe: ModelManager) -> None:
    async with probe.transaction() as conn:
        await db.execute_later(conn, _INSERT, {"v": 3})
        raise RuntimeError("the block fails before anything else is sent")


async def test_a_statement_queued_for_later_commits_with_the_transaction_or_not_at_all(
    probe: ModelManager,
) -> None:
    async with probe.transaction() as conn:
        await db.execute_later(conn, _INSERT, {"v": 1})
        # Not sent yet: it travels with the next statement, which then sees it.
        row = await db.fetch_one(conn, _VALUES)
        assert row is not None
        assert list(row["vs"]) == [1]
        await db.execute_later(conn, _INSERT, {"v": 2})  # travels with the COMMIT
    assert await _values(probe) == [1, 2]

    with pytest.raises(RuntimeError):
        await _queue_then_fail(probe)
    assert await _values(probe) == [1, 2]


async def _queue_a_duplicate(probe: ModelManager) -> None:
    async with probe.transaction() as conn:
        await db.execute(conn, _INSERT, {"v": 5})
        await db.execute_later(conn, _INSERT, {"v": 5})  # a duplicate, refused at COMMIT


async def test_a_queued_statement_that_fails_fails_its_transaction(probe: ModelManager) -> None:
    with pytest.raises(Conflict):
        await _queue_a_duplicate(probe)
    assert await _values(probe) == []
    # The connection went back to the pool in a usable state.
    async with probe.transaction() as conn:
        await db.execute(conn, _INSERT, {"v": 6})
    assert await _values(probe) == [6]


async def _insert_in_savepoint(conn: db.Connection, *values: int) -> None:
    async with db.savepoint(conn):
        for value in values:
            await db.execute(conn, _INSERT, {"v": value})


async def _fail_around_a_savepoint(conn: db.Connection) -> None:
    async with db.savepoint(conn):
        await _insert_in_savepoint(conn, 4)  # its savepoint succeeded ...
        raise RuntimeError("... but the enclosing block fails, and takes 4 with it")


async def test_savepoints_nest_and_roll_back_only_their_own_block(probe: ModelManager) -> None:
    async with probe.unit_of_work() as outer:
        async with db.savepoint(outer):
            await db.execute(outer, _INSERT, {"v": 1})
            with pytest.raises(Conflict):
                await _insert_in_savepoint(outer, 2, 1)  # 1 fails, and undoes 2 as well
            await db.execute_later(outer, _INSERT, {"v": 3})
        with pytest.raises(RuntimeError):
            await _fail_around_a_savepoint(outer)
        async with db.savepoint(outer):
            # Only a queued statement: its savepoint is never sent, the statement joins the unit's COMMIT.
            await db.execute_later(outer, _INSERT, {"v": 5})
    assert await _values(probe) == [1, 3, 5]


async def _catch_an_error_outside_a_savepoint(probe: ModelManager) -> None:
    async with probe.unit_of_work() as outer:
        await db.execute(outer, _INSERT, {"v": 1})
        with pytest.raises(Conflict):
            await db.execute(outer, _INSERT, {"v": 1})  # aborts the transaction: no savepoint to go back to


async def test_a_unit_whose_statement_error_was_caught_outside_a_savepoint_does_not_commit(
    probe: ModelManager,
) -> None:
    with pytest.raises(HetuflowError, match="aborted"):
        await _catch_an_error_outside_a_savepoint(probe)
    assert await _values(probe) == []


async def _insert_then_fail(probe: ModelManager, value: int) -> None:
    async with probe.transaction() as conn:
        await db.execute(conn, _INSERT, {"v": value})
        raise RuntimeError("the block fails after its statement ran")


async def test_a_failing_first_block_of_a_unit_is_undone_and_the_unit_goes_on(probe: ModelManager) -> None:
    committed: list[str] = []
    async with probe.unit_of_work():
        # The first block of the transaction: going back to its start is going back to BEGIN.
        with pytest.raises(RuntimeError):
            await _insert_then_fail(probe, 7)
        with pytest.raises(RuntimeError):
            await _insert_then_fail(probe, 8)  # first again: nothing of the unit survived the last one
        async with probe.transaction() as conn:
            await db.execute(conn, _INSERT, {"v": 9})
        with pytest.raises(RuntimeError):
            await _insert_then_fail(probe, 10)  # not first: a savepoint keeps 9
        probe.after_commit(lambda: committed.append("after"))
    assert committed == ["after"]
    assert await _values(probe) == [9]


async def test_rows_fetched_later_arrive_with_the_next_statement_or_the_commit(probe: ModelManager) -> None:
    async with probe.transaction() as conn:
        await db.execute(conn, _INSERT, {"v": 1})
        before = await db.fetch_later(conn, _VALUES)
        with pytest.raises(RuntimeError, match="before the statement ran"):
            _ = before.rows
        await db.execute(conn, _INSERT, {"v": 2})  # sent after the queued read, in the same round trip
        at_commit = await db.fetch_later(conn, _VALUES)
    row = before.first()
    assert row is not None
    assert list(row["vs"]) == [1]
    row = at_commit.first()
    assert row is not None
    assert list(row["vs"]) == [1, 2]
    assert await _values(probe) == [1, 2]
