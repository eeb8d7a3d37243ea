"""Message ids for the frames this agent sends: unique, in send order, and cheap to make.

Every report, ack and credit announcement carries a fresh id; the server remembers report ids to apply
each report once. ``hetuflow_core``'s default (a UUIDv7 per frame: a clock read, an ``os.urandom``
system call and a ``UUID`` object) cost the agent about 10 µs per frame, several frames per task. Here
an id is this process's prefix — its start time in milliseconds and 32 random bits — followed by a
counter: 32 hex characters like the default, never repeated within the process, and told apart from
any other process of the same agent by the prefix. Ids still sort by the order they were made in.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Final

__all__ = ["next_message_id"]

_PREFIX: Final = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}{os.urandom(4).hex()}"
"""12 hex digits of milliseconds since the epoch and 8 random ones; the counter adds 12 more."""
_counter = itertools.count()


def next_message_id() -> str:
    """A message id no frame of this process had before."""
    return f"{_PREFIX}{next(_counter):012x}"
