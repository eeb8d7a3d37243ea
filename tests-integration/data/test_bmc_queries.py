"""Every named SQL block parses and plans against the migrated schema, each parameter typed by a cast."""

from __future__ import annotations

import re

import psycopg
import pytest

from hetuflow_server.infra.sql import Query, all_queries, query

_PARAM = re.compile(r"%\((\w+)\)s")


def _positional(text: str) -> str:
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return _PARAM.sub(number, text)


def test_queries_are_loaded_and_named() -> None:
    queries = all_queries()
    assert len(queries) > 50
    assert query("claim_due_tasks").name == "claim_due_tasks"
    with pytest.raises(LookupError):
        query("no_such_query")


# Utility statements (SET) cannot be prepared; they take no parameters either.
PREPARABLE = sorted(
    (q for q in all_queries().values() if not q.text.upper().startswith("SET ")), key=lambda q: q.name
)


@pytest.mark.parametrize("q", PREPARABLE, ids=lambda q: q.name)
async def test_query_prepares(q: Query, migrated_database_url: str) -> None:
    # PREPARE infers every parameter's type from the statement: an uncast parameter whose type PostgreSQL
    # cannot infer, a typo in a column, or a syntax error fails here rather than in production.
    async with await psycopg.AsyncConnection.connect(migrated_database_url) as conn:
        await conn.execute(f"PREPARE check_stmt AS {_positional(q.text)}".encode())
        cur = await conn.execute(
            b"SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'check_stmt'"
        )
        row = await cur.fetchone()
        assert row is not None
        assert "unknown" not in row[0]
        await conn.rollback()
