"""The shared readiness watcher: level-triggered callbacks for many descriptors, removal, failures."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from hetuflow_agent.process.watcher import watcher_for


async def test_a_callback_runs_while_its_descriptor_is_readable_until_removed() -> None:
    loop = asyncio.get_running_loop()
    watcher = watcher_for(loop)
    assert watcher_for(loop) is watcher
    pipes = [os.pipe() for _ in range(3)]
    calls: list[int] = []
    try:
        for index, (read_end, _) in enumerate(pipes):
            watcher.add(read_end, functools.partial(calls.append, index))
        os.write(pipes[0][1], b"x")
        os.write(pipes[2][1], b"x")
        await asyncio.sleep(0.05)
        assert set(calls) == {0, 2}  # only the readable ones
        assert calls.count(0) > 1  # level triggered: again and again while unread
        watcher.remove(pipes[0][0])
        watcher.remove(pipes[2][0])
        watcher.remove(pipes[2][0])  # twice is fine
        calls.clear()
        await asyncio.sleep(0.05)
        assert calls == []
    finally:
        watcher.remove(pipes[1][0])
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)


async def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    watcher = watcher_for(loop)
    (bad_read, bad_write), (good_read, good_write) = os.pipe(), os.pipe()
    good = loop.create_future()

    def read_good() -> None:
        if not good.done():
            good.set_result(os.read(good_read, 10))

    def fail() -> None:
        watcher.remove(bad_read)
        raise RuntimeError("boom")

    try:
        watcher.add(bad_read, fail)
        watcher.add(good_read, read_good)
        os.write(bad_write, b"x")
        os.write(good_write, b"y")
        assert await asyncio.wait_for(good, 5) == b"y"
        assert [type(context["exception"]) for context in reported] == [RuntimeError]
    finally:
        watcher.remove(good_read)
        loop.set_exception_handler(None)
        for fd in (bad_read, bad_write, good_read, good_write):
            os.close(fd)
