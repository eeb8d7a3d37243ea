"""Named SQL blocks: every statement the server runs, loaded once from the ``.sql`` files of this package.

Each ``.sql`` file holds blocks that start with a ``-- name: <query_name>`` line; the text up to the next such
line is the statement (procrastinate's layout). Comment lines right after the name line document the block.
Statements take named ``%(param)s`` placeholders with explicit casts, so PostgreSQL never guesses a parameter
type and a test can prepare every block against the migrated schema. Nothing here formats SQL from values: the
text is trusted because it ships in the wheel, and is wrapped in ``psycopg.sql.SQL`` to say so.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from types import MappingProxyType
from typing import Final

from psycopg import sql

__all__ = ["Query", "all_queries", "query"]

_NAME_LINE: Final = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Query:
    """One named statement: its name (for logs and errors) and its trusted text."""

    __slots__ = ("name", "statement", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.statement = sql.SQL(text)  # trusted text from the wheel, never a value

    def __repr__(self) -> str:
        return f"Query({self.name!r})"


def _parse(source: str, filename: str) -> dict[str, Query]:
    blocks: dict[str, Query] = {}
    matches = list(_NAME_LINE.finditer(source))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(source)
        body_lines = [
            line for line in source[match.end() : end].splitlines() if not line.lstrip().startswith("--")
        ]
        text = "\n".join(body_lines).strip().rstrip(";").strip()
        name = match.group(1)
        if not text:
            raise ValueError(f"{filename}: query {name!r} is empty")
        if name in blocks:
            raise ValueError(f"{filename}: query {name!r} is defined twice")
        blocks[name] = Query(name, text)
    return blocks


@functools.cache
def all_queries() -> MappingProxyType[str, Query]:
    """Every named query of every ``.sql`` file in this package, read once; names are unique across files."""
    found: dict[str, Query] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, block in _parse(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in found:
                raise ValueError(f"{entry.name}: query {name!r} is already defined in another file")
            found[name] = block
    return MappingProxyType(found)


def query(name: str) -> Query:
    """The named query ``name``; a typo fails loudly at import time of the module that asks for it."""
    try:
        return all_queries()[name]
    except KeyError:
        raise LookupError(f"no SQL block named {name!r}") from None
