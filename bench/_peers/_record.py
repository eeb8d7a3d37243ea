"""The one task body every peer runs: ``bash -c true``, then a line ``index start end`` appended to a file.

The lines are how the benchmark times the peers (first start, last end, each from the worker itself) and
how it checks that every task ran exactly once: one line per index, no index twice. A short ``O_APPEND``
write is atomic on Linux, so the workers' processes and threads never interleave their lines.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

COMMAND = ("bash", "-c", "true")


def run_recorded(index: int, log_path: str) -> None:
    """Run the command once and record it in ``log_path``."""
    start = time.time()
    subprocess.run(COMMAND, check=True)
    end = time.time()
    with open(log_path, "a", encoding="ascii") as log:
        log.write(f"{index} {start:.6f} {end:.6f}\n")


class Record:
    """What the lines of one run say: how many tasks ran, when the first started and the last ended."""

    def __init__(self, path: Path) -> None:
        self.indices: list[int] = []
        self.first_start = float("inf")
        self.last_end = 0.0
        if not path.exists():
            return
        for line in path.read_text(encoding="ascii").splitlines():
            index, start, end = line.split()
            self.indices.append(int(index))
            self.first_start = min(self.first_start, float(start))
            self.last_end = max(self.last_end, float(end))

    def check_exactly_once(self, tool: str, count: int) -> None:
        """Raise ``ExactlyOnceError`` unless indices ``0 … count-1`` each ran exactly once."""
        if sorted(self.indices) != list(range(count)):
            seen = set(self.indices)
            missing = count - len(seen & set(range(count)))
            repeated = len(self.indices) - len(seen)
            raise ExactlyOnceError(
                f"{tool}: {count} tasks, {missing} never ran, {repeated} ran more than once"
            )


class ExactlyOnceError(RuntimeError):
    """A benchmark run lost a task or ran one twice: its figures mean nothing."""
