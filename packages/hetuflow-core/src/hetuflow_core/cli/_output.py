"""How commands print: listings as an aligned table or as JSON (``--output``), one object as ``key value``
lines or JSON, and times in the reader's local zone.

Tables have no borders so they read like ``kubectl get`` and cut well with ``awk``; JSON is exactly what the
REST API answers (the same Structs, encoded by msgspec), so scripts can rely on its field names.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import click
import msgspec
from rich.table import Table
from rich.text import Text

from hetuflow_core.api import Page
from hetuflow_core.cli._context import Context

__all__ = [
    "OUTPUT_FORMATS",
    "Column",
    "all_pages",
    "output_option",
    "print_json",
    "show_list",
    "show_one",
    "text",
]

OUTPUT_FORMATS: Final = ("table", "json")
PAGE_LIMIT: Final = 1000
"""Items asked for per page when a command reads a whole collection."""

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def output_option(function: F) -> F:
    """The ``-o/--output table|json`` option of every listing."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default="table",
        show_default=True,
        help="table for people, json for scripts (the API's own field names)",
    )(function)


class Column:
    """A table column: its header and how to get its cell from an item."""

    def __init__(self, header: str, cell: Callable[[Any], object]) -> None:
        self.header = header
        self.cell = cell


def text(value: object) -> str:
    """A cell or value as text: times local and to the second, enums by value, ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode() if value else "-"
    if isinstance(value, msgspec.Struct):
        return msgspec.json.encode(value).decode()
    return str(value)


def print_json(ctx: Context, value: object) -> None:
    """``value`` as indented JSON on stdout."""
    ctx.out.print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode(), markup=False)


def show_list(ctx: Context, items: Sequence[Any], columns: Sequence[Column], output: str) -> None:
    """Print ``items`` as a table of ``columns`` or as a JSON array."""
    if output == "json":
        print_json(ctx, list(items))
        return
    table = Table(box=None, pad_edge=False, header_style="bold" if ctx.out.is_terminal else "")
    for column in columns:
        table.add_column(column.header, overflow="fold")
    for item in items:
        table.add_row(*(Text(text(column.cell(item))) for column in columns))
    _print_table(ctx, table)


def show_one(ctx: Context, item: msgspec.Struct, output: str) -> None:
    """Print one object: ``field  value`` lines, or JSON."""
    if output == "json":
        print_json(ctx, item)
        return
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold" if ctx.out.is_terminal else "")
    table.add_column(overflow="fold")
    for field in item.__struct_fields__:
        table.add_row(Text(field), Text(text(getattr(item, field))))
    _print_table(ctx, table)


def _print_table(ctx: Context, table: Table) -> None:
    if ctx.out.is_terminal:
        ctx.out.print(table)
        return
    # Rich pads every cell to its column's width; a pipe gets the lines without the trailing blanks.
    with ctx.out.capture() as captured:
        ctx.out.print(table)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def all_pages(fetch: Callable[[str | None], Page[T]], limit: int | None = None) -> Iterator[T]:
    """Every item of a paged listing (up to ``limit``), following ``next_cursor``."""
    cursor: str | None = None
    seen = 0
    while True:
        page = fetch(cursor)
        for item in page.items:
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield item
        if page.next_cursor is None or not page.items:
            return
        cursor = page.next_cursor
