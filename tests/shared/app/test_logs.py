from __future__ import annotations

import io
import json
import logging

from shared.app.logs import configure, fields


def test_records_become_cloud_logging_json_lines() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure(stream)
        configure(stream)  # idempotent: one handler
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("gtcoco").warning("partial: %s", "a.json", extra=fields(key="a", skip=None))
        logging.getLogger("urllib3").error("library line")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("gtcoco").exception("failed")
    finally:
        root.handlers[:] = before
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0] == {"severity": "WARNING", "message": "partial: a.json", "logger": "gtcoco", "key": "a"}
    assert lines[1]["severity"] == "ERROR" and lines[1]["logger"] == "urllib3"
    assert lines[2]["severity"] == "ERROR" and "ValueError: boom" in lines[2]["message"]
