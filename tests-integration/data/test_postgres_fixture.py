"""Smoke tests of the PostgreSQL test plugin: the server answers; each test module gets its own database."""

from __future__ import annotations

import pgfixture
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db.example:5433/postgres", "postgresql://u:p@db.example:5433/fresh"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/pg%20x",
            "postgresql://postgres:@/fresh?host=/tmp/pg%20x",
        ),
        ("postgres://u@h/postgres?sslmode=disable&dbname=old", "postgres://u@h/fresh?sslmode=disable"),
    ],
)
def test_database_url_for_urls(url: str, expected: str) -> None:
    assert pgfixture.database_url_for(url, "fresh") == expected


def test_database_url_for_socket_url_keeps_host() -> None:
    url = pgfixture.database_url_for("postgresql://postgres:@/postgres?host=/tmp/s", "a b")
    params = conninfo_to_dict(url)
    assert params == {"user": "postgres", "host": "/tmp/s", "dbname": "a b"}


def test_database_url_for_keyword_conninfo() -> None:
    params = conninfo_to_dict(pgfixture.database_url_for("host=/tmp/s user=postgres dbname=postgres", "x"))
    assert params == {"host": "/tmp/s", "user": "postgres", "dbname": "x"}


def test_unique_database_name_fits_postgres_limit() -> None:
    names = {pgfixture.unique_database_name("tests." + "very_long_module_name" * 10) for _ in range(50)}
    assert len(names) == 50
    assert all(len(name.encode()) <= 63 and name.isidentifier() for name in names)


def test_select_one(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_database_is_the_modules_own(database_url: str, pg_admin_url: str) -> None:
    expected = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select current_database()").fetchone()
    assert row is not None
    assert row[0] == expected
    assert expected != conninfo_to_dict(pg_admin_url).get("dbname")
    assert str(expected).startswith("hetuflow_t_test_postgres_fixture_")


def test_create_table(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("create table smoke (id bigint primary key, note text not null)")
        conn.execute("insert into smoke values (%s, %s)", (1, "hello"))
        assert conn.execute("select note from smoke where id = %s", (1,)).fetchone() == ("hello",)


async def test_async_connection(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("select %s::int + 1", (41,))
        assert await cur.fetchone() == (42,)


def _user_tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables"
            " where table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {str(row[0]) for row in rows}


def _database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url) as conn:
        return conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is not None


def test_fresh_databases_are_empty_isolated_and_dropped(pg_admin_url: str) -> None:
    with (
        pgfixture.fresh_database(pg_admin_url, "isolation_a") as url_a,
        pgfixture.fresh_database(pg_admin_url, "isolation_b") as url_b,
    ):
        assert url_a != url_b
        assert _user_tables(url_a) == set()
        with psycopg.connect(url_a) as conn:
            conn.execute("create table only_in_a (id int)")
            # An open session must not keep the database from being dropped (DROP ... WITH (FORCE)).
            held_open = psycopg.connect(url_a)
        assert _user_tables(url_a) == {"only_in_a"}
        assert _user_tables(url_b) == set()
        names = [str(conninfo_to_dict(url)["dbname"]) for url in (url_a, url_b)]
    held_open.close()
    assert not any(_database_exists(pg_admin_url, name) for name in names)
