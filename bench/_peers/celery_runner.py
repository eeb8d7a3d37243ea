"""Celery + Redis on the benchmark's workload: Debian's ``redis-server`` on a free loopback port and a
``celery worker --pool prefork --concurrency N`` process, timed in two modes.

- **drained**: every task is queued (``delay``) while no worker runs; then the worker starts. The rate is
  the count over the time from the first task's start to the last task's end, both written by the tasks
  (worker start-up is not counted, as it is not for the other tools).
- **end to end**: the worker runs (one warm-up task went through it); the tasks are submitted with
  ``delay`` one by one, as an application would. The rate is the count over the time from the first
  submit to the last task's end.

Results go to Redis as well (the usual set-up: a caller can wait for them). Gossip, mingle and worker
heartbeats are off: they only speed up start-up and do not touch the task path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _peers._process import PeerUnavailable, bench_env, free_port, stop, wait_records, worker

READY_TIMEOUT_SECS = 30.0
WARM_UP_TIMEOUT_SECS = 60.0


def redis_executable() -> str:
    """Path of ``redis-server``; installs Debian's package when missing and running as root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise PeerUnavailable(
            "redis-server is missing and this is not root: `apt-get install -y redis-server` adds Celery"
        )
    print("installing redis-server with apt-get (Celery's broker) …", flush=True)
    if _apt("install", "-y", "-q", "redis-server") != 0:
        _apt("update", "-q")  # a fresh machine may have no package lists yet
        _apt("install", "-y", "-q", "redis-server")
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise PeerUnavailable("apt-get could not install redis-server")
    return found


def _apt(*args: str) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, stdout=subprocess.DEVNULL, check=False).returncode


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` (no persistence) on a free loopback port; yields its URL."""
    import redis

    port = free_port()
    args = [
        redis_executable(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    process = subprocess.Popen([*args, "--dir", str(directory)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise PeerUnavailable("redis-server did not start")
            time.sleep(0.05)
        client.close()
        yield url
    finally:
        stop(process)


class Celery:
    """Celery on one Redis: the app, its task, and the two timed modes."""

    def __init__(self, redis_url: str, root: Path, concurrency: int) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url  # read when the app module is first imported
        from _peers import celery_app

        self._module: Any = celery_app
        self._redis_url = redis_url
        self._root = root
        self._concurrency = concurrency
        self._runs = 0

    def _worker(self) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        args = ["celery", "-A", "_peers.celery_app", "worker", "--pool", "prefork"]
        args += ["--concurrency", str(self._concurrency), "--loglevel", "WARNING"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        return worker(args, bench_env(BENCH_REDIS_URL=self._redis_url), self._root / "celery-worker.log")

    def _log(self, mode: str) -> Path:
        self._runs += 1
        self._module.app.control.purge()
        return self._root / f"celery-{mode}-{self._runs}.log"

    def drained(self, count: int) -> float:
        log = self._log("drained")
        for index in range(count):
            self._module.run_true.delay(index, str(log))
        with self._worker() as process:
            record = wait_records(log, count, process)
        record.check_exactly_once("celery drained", count)
        return count / (record.last_end - record.first_start)

    def end_to_end(self, count: int) -> float:
        log = self._log("e2e")
        with self._worker() as process:
            warm = self._module.run_true.delay(-1, str(self._root / "celery-warm-up.log"))
            warm.get(timeout=WARM_UP_TIMEOUT_SECS)
            first_submit = time.time()
            for index in range(count):
                self._module.run_true.delay(index, str(log))
            record = wait_records(log, count, process)
        record.check_exactly_once("celery end to end", count)
        return count / (record.last_end - first_submit)
