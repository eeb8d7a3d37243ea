"""The log lines of both hetuflow programs, and the one function their command lines call to install them.

Records go to stderr (stdout is kept for command output such as a new token), as text for people or as one
JSON object per line for collectors. A JSON line has ``ts`` (ISO-8601 UTC with milliseconds and ``Z``),
``level`` (lower case), ``logger``, ``message``, then the stable ids passed through ``extra=`` (``agent_id``,
``task_id``, ``loop`` ...) and, for a record with an exception, ``exc`` (the traceback). A text line has the
same parts in the same order, the level in capitals and the ids as ``key=value``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

import msgspec

__all__ = ["JsonFormatter", "LogFormat", "LogLevel", "TextFormatter", "configure_logging"]

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_JSON: Final = msgspec.json.Encoder(enc_hook=str)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO hetuflow_server.x: message key=value``, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{key}={value}" for key, value in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # An extra named like a fixed field (``extra={"level": ...}``) must not hide that field.
        entry.update((key, value) for key, value in _extras(record).items() if key not in entry)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(entry).decode()


def configure_logging(
    level: LogLevel,
    log_format: LogFormat,
    *,
    stream: TextIO | None = None,
    quiet: bool = False,
    chatty_loggers: Iterable[str] = (),
) -> None:
    """Send every record at ``level`` or above to ``stream`` (default stderr) as ``log_format`` lines.

    Replaces the root logger's handlers, so calling it again reconfigures. ``quiet`` (one-shot commands)
    raises ``info`` to ``warning``: their result is what matters, not the steps. ``chatty_loggers``
    (third-party loggers that talk a lot at ``info``) speak at ``warning`` and above unless ``level`` is
    ``debug``.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    threshold = getattr(logging, level.upper())
    if quiet and threshold == logging.INFO:
        threshold = logging.WARNING
    root.setLevel(threshold)
    for name in chatty_loggers:
        logging.getLogger(name).setLevel(logging.DEBUG if threshold <= logging.DEBUG else logging.WARNING)
