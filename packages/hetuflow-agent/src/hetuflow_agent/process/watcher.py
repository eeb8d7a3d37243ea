"""Readiness of the many short-lived descriptors of attempts, through one epoll set the loop watches.

Every attempt registers three descriptors with the event loop for its life — the pidfd its exit is
seen on and the read ends of its stdout and stderr — and most attempts of a busy agent live for
milliseconds. asyncio's ``add_reader``/``remove_reader`` cost about 9 µs a pair (a handle, a selector
key, a transport check and the ``epoll_ctl``), and each ready descriptor becomes its own callback on
the loop's ready queue. ``FdWatcher`` keeps them in an epoll set of its own instead: registering is the
``epoll_ctl`` and a dict entry, the loop watches the set's one descriptor, and when it is ready every
ready descriptor's callback runs in that one turn. Semantics are those of ``add_reader``: level
triggered, a callback runs while its descriptor is readable until it is removed. Where ``select.epoll``
is missing (not Linux) the loop's own readers are used.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from collections.abc import Callable

__all__ = ["FdWatcher", "watcher_for"]

_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FdWatcher] = weakref.WeakKeyDictionary()


def watcher_for(loop: asyncio.AbstractEventLoop) -> FdWatcher:
    """The watcher of ``loop`` (one per loop, made on first use, gone with the loop)."""
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = FdWatcher(loop)
    return watcher


class FdWatcher:
    """Calls a callback while its descriptor is readable; event-loop only, not thread-safe."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the registry's entry must not keep its own key (the loop) alive.
        self._loop_ref = weakref.ref(loop)
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._watching = False

    def add(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable, until ``remove(fd)``."""
        loop = self._loop()
        if self._epoll is None:
            loop.add_reader(fd, callback)
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback
        if not self._watching:
            loop.add_reader(self._epoll.fileno(), self._on_ready)
            self._watching = True

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (call it before closing ``fd``); unknown descriptors are ignored."""
        if self._epoll is None:
            self._loop().remove_reader(fd)
        elif self._callbacks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        if loop is None:
            raise RuntimeError("the event loop of this watcher is gone")
        return loop

    def _on_ready(self) -> None:
        assert self._epoll is not None
        for fd, _ in self._epoll.poll(0):
            # A callback may have removed another descriptor of this batch meanwhile: skip it. (One
            # re-added under the same number gets a spurious call, which every callback tolerates.)
            callback = self._callbacks.get(fd)
            if callback is None:
                continue
            try:
                callback()
            except Exception as exc:  # as the loop does for a reader: report it, go on with the others
                self._loop().call_exception_handler(
                    {"message": f"exception in the readiness callback of fd {fd}", "exception": exc}
                )
