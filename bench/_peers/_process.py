"""Starting and stopping the peers' servers and workers as real processes, and waiting for their records."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from _peers._record import Record

BENCH_DIR = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_SECS = 30.0
RUN_TIMEOUT_SECS = 600.0
POLL_SECS = 0.05


class PeerUnavailable(RuntimeError):
    """A peer cannot run on this machine (a missing program that cannot be installed); it is skipped."""


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a worker: ``bench/`` importable (for ``_peers``), plus ``extra``."""
    path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@contextlib.contextmanager
def worker(args: list[str], env: dict[str, str], output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m <args>`` until the block ends, then SIGTERM (a warm shutdown) and, if need be, SIGKILL.

    Its banner and logs go to ``output``, shown only when the block fails.
    """
    with open(output, "ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], env=env, cwd=BENCH_DIR, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        yield process
    except BaseException:
        stop(process)
        tail = output.read_text(errors="replace").splitlines()[-20:]
        print(f"--- last lines of `{' '.join(args[:1])}` output ---", *tail, sep="\n", file=sys.stderr)
        raise
    stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_records(path: Path, count: int, process: subprocess.Popen[bytes] | None = None) -> Record:
    """Wait until ``path`` holds ``count`` lines (or the worker died, or time ran out); return them."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECS
    while True:
        lines = path.read_bytes().count(b"\n") if path.exists() else 0
        if lines >= count:
            time.sleep(POLL_SECS * 4)  # a task that ran twice writes a second line: give it a moment
            return Record(path)
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode} after {lines} of {count} tasks")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {lines} of {count} tasks ran within {RUN_TIMEOUT_SECS:g} s")
        time.sleep(POLL_SECS)
