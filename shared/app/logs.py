"""Logging for Cloud Logging: library code logs through stdlib `logging` (`extra={"fields":
{...}}` for structured fields); `configure` installs one JSON formatter at the edge, so
our lines and every library's reach Cloud Logging with `severity`, `message` and the
fields as `jsonPayload`."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

# Cloud Logging's LogSeverity names for Python's levels.
SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_MARK = "_gtcoco_json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the shape Cloud Logging parses from stdout."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update((k, v) for k, v in fields.items() if v is not None)
        if record.exc_info:
            # Error Reporting groups entries whose message carries the stack trace.
            entry["message"] += "\n" + self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True, default=str)


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send every logger's records to `stream` (stdout) as JSON lines; idempotent."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _MARK, False):
            return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a structured log call."""
    return {"fields": values}
