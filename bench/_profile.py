"""py-spy profiles of the server and the agent during a benchmark run, and their hottest frames.

``recording`` attaches two ``py-spy record`` processes to each pid (``--nonblocking``, so the target is
never paused): one writes a flame graph (``NAME.svg``), the other the raw collapsed stacks (``NAME.txt``,
one line per distinct stack: ``frame;frame;…;leaf COUNT``). Both stop on SIGINT when the block ends and
write their files then. ``top_self`` reads a raw file and sums the samples per leaf frame (self time);
``top_total`` sums, per frame of hetuflow's own packages, the samples of every stack it is on (total time,
which says which of our functions the library time underneath belongs to). Frames are named
``function (file)`` without the line number, so one function is one row.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

RATE_HZ = 100
STOP_TIMEOUT_SECS = 60.0
_LINE_NUMBER = re.compile(r":\d+\)$")
_ENTRY_POINT = re.compile(r"/(__main__|cli)(/|\.py)")


def py_spy() -> str:
    """The py-spy executable next to this Python, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed (pip install py-spy; it is in bench/requirements.txt)")
    return found


@contextlib.contextmanager
def recording(directory: Path, targets: dict[str, int]) -> Iterator[None]:
    """Record every ``name: pid`` of ``targets`` for the block into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    recorders: list[subprocess.Popen[bytes]] = []
    log = open(directory / "py-spy.log", "ab")  # noqa: SIM115 - closed in the finally below
    try:
        for name, pid in targets.items():
            for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
                args = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking"]
                args += ["--format", fmt, "--output", str(directory / f"{name}.{suffix}")]
                recorders.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        yield
    finally:
        for recorder in recorders:
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            try:
                recorder.wait(timeout=STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
        log.close()


def _stacks(raw: Path) -> Iterator[tuple[list[str], int]]:
    """Each stack of a raw py-spy file (frames without line numbers, root first) with its sample count."""
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            yield [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")], int(samples)


def top_self(raw: Path, count: int) -> tuple[int, list[tuple[str, int]]]:
    """Total samples of a raw py-spy file, and its ``count`` frames with the most self samples."""
    leaves: Counter[str] = Counter()
    total = 0
    for frames, samples in _stacks(raw):
        leaves[frames[-1]] += samples
        total += samples
    return total, leaves.most_common(count)


def top_total(raw: Path, count: int, marker: str = "hetuflow_") -> list[tuple[str, int]]:
    """The ``count`` frames whose file contains ``marker`` with the most samples on their stacks.

    The entry points (``__main__`` and ``cli`` modules) are left out: they are on every stack.
    """
    totals: Counter[str] = Counter()
    for frames, samples in _stacks(raw):
        for frame in set(frames):
            if marker in frame and not _ENTRY_POINT.search(frame):
                totals[frame] += samples
    return totals.most_common(count)


def print_top(name: str, raw: Path, count: int) -> None:
    if not raw.exists():
        print(f"\n{name}: no profile written ({raw} is missing; see py-spy.log next to it)")
        return
    total, top = top_self(raw, count)
    print(f"\n{name}: top {count} frames by self time ({total} samples at {RATE_HZ} Hz, idle excluded)")
    for frame, samples in top:
        print(f"{samples / max(total, 1) * 100:6.1f}%  {samples:>6}  {frame}")
    print(f"\n{name}: top {count} hetuflow frames by total time (self + everything they call)")
    for frame, samples in top_total(raw, count):
        print(f"{samples / max(total, 1) * 100:6.1f}%  {samples:>6}  {frame}")
