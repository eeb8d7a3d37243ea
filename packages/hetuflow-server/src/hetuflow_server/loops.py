"""Background loops of a server: named asyncio tasks started and stopped in a fixed order.

The application container registers every long-running coroutine here (server heartbeat, dispatcher,
generator, reaper, NOTIFY listener ...). `BackgroundLoops.start` creates them as named tasks in
registration order; `BackgroundLoops.stop` cancels them in reverse order and waits for each, so a loop
never outlives what it depends on. `every` builds the common shape of a loop: run a step, log its error
if it fails, wait, go on; `woken` the shape of a loop that also runs as soon as something wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["BackgroundLoops", "LoopFactory", "every", "woken"]

logger = logging.getLogger(__name__)

LoopFactory = Callable[[], Coroutine[Any, Any, None]]
"""A zero-argument coroutine function that runs until cancelled."""


class BackgroundLoops:
    """An ordered registry of background loops with an explicit start and stop."""

    def __init__(self) -> None:
        self._factories: dict[str, LoopFactory] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def add(self, name: str, factory: LoopFactory) -> None:
        """Register ``factory`` under ``name``; loops start in the order they were added."""
        if name in self._factories:
            raise ValueError(f"background loop {name!r} is already registered")
        if self._tasks:
            raise RuntimeError(f"cannot add background loop {name!r}: the loops are already running")
        self._factories[name] = factory

    @property
    def names(self) -> list[str]:
        """Registered loop names in start order."""
        return list(self._factories)

    @property
    def running(self) -> list[str]:
        """Names of the loops whose task is still running."""
        return [name for name, task in self._tasks.items() if not task.done()]

    def start(self) -> None:
        """Create one named task per registered loop, in registration order."""
        for name, factory in self._factories.items():
            task = asyncio.create_task(factory(), name=f"hetuflow:{name}")
            task.add_done_callback(_report_exit)
            self._tasks[name] = task
            logger.debug("background loop %s started", name, extra={"loop": name})

    async def stop(self) -> None:
        """Cancel the loops in reverse start order, waiting for each to finish before the next."""
        for name, task in reversed(self._tasks.items()):
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                # Already logged by _report_exit; stopping the others matters more now.
                pass
            logger.debug("background loop %s stopped", name, extra={"loop": name})
        self._tasks.clear()


def every(
    interval_secs: float, step: Callable[[], Awaitable[None]], *, name: str, run_first: bool = True
) -> LoopFactory:
    """A loop calling ``step`` every ``interval_secs``; a failing step is logged and the loop goes on."""

    async def loop() -> None:
        if not run_first:
            await asyncio.sleep(interval_secs)
        while True:
            try:
                await step()
            except Exception:
                logger.exception("background loop %s: step failed", name, extra={"loop": name})
            raise_if_cancelled()
            await asyncio.sleep(interval_secs)

    return loop


def woken(
    wake: asyncio.Event,
    interval_secs: float,
    step: Callable[[], Awaitable[None]],
    *,
    name: str,
    active: Callable[[], bool] = lambda: True,
) -> LoopFactory:
    """A loop calling ``step`` as soon as ``wake`` is set, and every ``interval_secs`` otherwise, whenever
    ``active()`` says so (e.g. while this server leads); a failing step is logged and the loop goes on."""

    async def loop() -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives as
            # the event is set, and the loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_secs):
                    await wake.wait()
            wake.clear()
            if not active():
                continue
            try:
                await step()
            except Exception:
                logger.exception("background loop %s: step failed", name, extra={"loop": name})
            raise_if_cancelled()

    return loop


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop and something swallowed the request.

    Library code awaited by a step can lose a cancellation on Python 3.11 (a wait that completes in the same
    moment returns its result instead); the request is still counted on the task, and a loop that checked
    nothing would run on and keep ``BackgroundLoops.stop`` waiting forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _report_exit(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error(
            "background loop %s crashed",
            task.get_name(),
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"loop": task.get_name()},
        )
    else:
        logger.warning("background loop %s returned early", task.get_name(), extra={"loop": task.get_name()})
