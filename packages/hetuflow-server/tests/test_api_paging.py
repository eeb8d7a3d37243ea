"""Unit tests of paging over fully loaded lists."""

from __future__ import annotations

import pytest

from hetuflow_server import errors
from hetuflow_server.endpoint.api.paging import page_of

ITEMS = ["a", "b", "c", "d", "e"]


def walk(items: list[str], limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = page_of(items, str, cursor, limit)
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return pages


def test_pages_cover_everything_once() -> None:
    assert walk(ITEMS, 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert walk(ITEMS, 5) == [ITEMS]
    assert walk(ITEMS, 100) == [ITEMS]
    assert walk([], 3) == [[]]


def test_cursor_of_a_vanished_item_continues_after_its_place() -> None:
    cursor = page_of(ITEMS, str, None, 2).next_cursor
    assert page_of(["a", "c", "d"], str, cursor, 2).items == ["c", "d"]


@pytest.mark.parametrize("cursor", ["!!", "YQ", "0190a0f0-0000-7000-8000-000000000000", "k:a"])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        page_of(ITEMS, str, cursor, 2)
    assert caught.value.fields[0].path == "$.cursor"
