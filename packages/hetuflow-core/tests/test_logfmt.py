"""The log line formats both programs write, through a real logger and handler."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hetuflow_core.logfmt import configure_logging

CHATTY = "hetuflow_core.tests.chatty"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`configure_logging` replaces the root logger's handlers (its job in a program); put them back."""
    root, chatty = logging.getLogger(), logging.getLogger(CHATTY)
    handlers, level, chatty_level = root.handlers[:], root.level, chatty.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    chatty.setLevel(chatty_level)


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_line_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    task_id = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    before = datetime.now(UTC)
    logging.getLogger("hetuflow.test").info(
        "task %s started", "t-1", extra={"task_id": task_id, "path": Path("/tmp/x"), "level": "spoof"}
    )
    (line,) = _lines(stream)
    record = json.loads(line)
    assert list(record) == ["ts", "level", "logger", "message", "task_id", "path"]
    assert record["level"] == "info"  # an extra cannot hide a fixed field
    assert record["logger"] == "hetuflow.test"
    assert record["message"] == "task t-1 started"
    assert record["task_id"] == str(task_id)
    assert record["path"] == "/tmp/x"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    stamp = datetime.fromisoformat(record["ts"])
    assert stamp.tzinfo == UTC
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= stamp


def test_json_line_carries_the_traceback_as_exc() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("hetuflow.test").exception("it failed")
    (line,) = _lines(stream)
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["exc"].startswith("Traceback (most recent call last):")
    assert record["exc"].endswith("RuntimeError: boom")
    assert "exc_info" not in record


def test_text_line_has_the_same_parts() -> None:
    stream = io.StringIO()
    configure_logging("info", "text", stream=stream)
    logging.getLogger("hetuflow.test").warning("agent %s lost", "a-1", extra={"agent_id": "a-1"})
    (line,) = _lines(stream)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING hetuflow\.test: agent a-1 lost agent_id=a-1", line
    )


def test_level_quiet_and_chatty_loggers() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, quiet=True, chatty_loggers=[CHATTY])
    logger = logging.getLogger("hetuflow.test")
    logger.info("a step")  # quiet: info is raised to warning
    logger.warning("a result")
    logging.getLogger(CHATTY).info("noise")
    assert [json.loads(line)["message"] for line in _lines(stream)] == ["a result"]

    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream, quiet=True, chatty_loggers=[CHATTY])
    logger.debug("detail")
    logging.getLogger(CHATTY).debug("noise at debug")
    assert [json.loads(line)["message"] for line in _lines(stream)] == ["detail", "noise at debug"]
    assert len(logging.getLogger().handlers) == 1  # configuring again replaces, never stacks
