"""A few worker threads for blocking calls, handing results back to the event loop by one callback.

``concurrent.futures.ThreadPoolExecutor`` with ``run_in_executor`` costs, per call, a concurrent future
with its condition variable, a work item, a semaphore and two chained futures; measured on an agent
running short tasks, that machinery was a tenth of everything the agent did under the GIL. Here a call
is one ``SimpleQueue.put`` and, when it is done, one ``call_soon_threadsafe`` that settles an asyncio
future directly; calls nobody waits for settle nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Workers"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], Callable[[Any, BaseException | None], None] | None]


class Workers:
    """``count`` daemon threads named ``name``, started on first use; ``shutdown`` ends them."""

    def __init__(self, count: int, name: str) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_abandoned: Callable[[T], None] | None = None,
    ) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a worker; the future (of the running loop) gets its result or exception.

        Cancelling the future does not stop the call; ``on_abandoned`` then receives its result (on the
        loop), to release whatever it holds.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(result: Any, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
                loop.call_soon_threadsafe(_settle, future, result, error, on_abandoned)

        self._put((fn, args, deliver))
        return future

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker, without waiting for it; an exception is logged."""
        self._put((fn, args, None))

    def shutdown(self) -> None:
        """Let the workers finish the queued calls, then end them (blocking; idempotent)."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("workers are shut down")
            if not self._threads:
                for index in range(self._count):
                    thread = threading.Thread(target=self._work, name=f"{self._name}-{index}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
        self._jobs.put(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, deliver = job
            try:
                result = fn(*args)
            except Exception as exc:
                if deliver is None:
                    logger.exception("background call %s failed", getattr(fn, "__qualname__", fn))
                else:
                    deliver(None, exc)
            else:
                if deliver is not None:
                    deliver(result, None)


def _settle(
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
    on_abandoned: Callable[[Any], None] | None,
) -> None:
    if future.cancelled():
        if error is None and on_abandoned is not None:
            on_abandoned(result)
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
