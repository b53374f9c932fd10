"""One JSON line per outcome, in the shape Cloud Logging parses from stdout."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


def log(severity: str, message: str, stream: TextIO | None = None, **fields: Any) -> None:
    entry = {
        "severity": severity,
        "message": message,
        **{k: v for k, v in fields.items() if v is not None},
    }
    out = stream or sys.stdout
    out.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
    out.flush()
