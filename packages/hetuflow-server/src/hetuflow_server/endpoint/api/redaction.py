"""What readers of the API see of a job's config: secret env values replaced by ``SECRET_MASK``.

Jobs and tasks (a task carries a snapshot of its job's config) are stored and sent to agents with their secret
values; every API answer that carries a config passes through here first, so a read token never sees one.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.job import Job
from hetuflow_core.task import Task

__all__ = ["redacted", "redacted_page"]

_Item = TypeVar("_Item", Job, Task)


def redacted(item: _Item) -> _Item:
    """``item`` with its config's secret env values masked (the same object when it has none)."""
    config = item.config.redacted()
    return item if config is item.config else msgspec.structs.replace(item, config=config)


def redacted_page(page: Page[_Item]) -> Page[_Item]:
    """``page`` with every item's secret env values masked."""
    return Page(items=[redacted(item) for item in page.items], next_cursor=page.next_cursor)
