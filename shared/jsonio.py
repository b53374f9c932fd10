"""JSON in and out: bounded parsing, and canonical bytes for deterministic outputs."""

from __future__ import annotations

import json
from typing import Any

from .errors import ConversionError, TooLargeError


def _depth(doc: Any) -> int:
    """Nesting depth, iteratively (a recursive walk would hit Python's own limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _error_pointer(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line} column {col}"


def load_json(data: bytes, max_depth: int, max_bytes: int) -> Any:
    """Parse one JSON document, refusing oversize, over-deep and non-standard input."""
    if len(data) > max_bytes:
        raise TooLargeError("json_too_large", f"JSON is {len(data)} bytes, limit {max_bytes}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConversionError(
            "invalid_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        # NaN/Infinity literals (and 1e999) are let through so that the parser of shapes can
        # name the exact field with a JSON pointer; every number is checked where it is used.
        doc = json.loads(text)
    except RecursionError:
        raise ConversionError(
            "json_too_deep", f"JSON nesting exceeds the limit of {max_depth}"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConversionError(
            "invalid_json", f"invalid JSON: {exc.msg} ({_error_pointer(text, exc.pos)})"
        ) from None
    if _depth(doc) > max_depth:
        raise ConversionError("json_too_deep", f"JSON nesting exceeds the limit of {max_depth}")
    return doc


def load_json_lines(data: bytes, max_depth: int, max_bytes: int) -> list[Any]:
    """Parse JSONL; a bad line's error names its line."""
    if len(data) > max_bytes:
        raise TooLargeError("json_too_large", f"JSONL is {len(data)} bytes, limit {max_bytes}")
    docs = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            docs.append(load_json(line, max_depth, max_bytes))
        except ConversionError as exc:
            raise type(exc)(exc.code, f"line {number}: {exc.message}", f"/{len(docs)}") from None
    return docs


def dump_json(doc: Any) -> bytes:
    """Canonical bytes: sorted keys, no NaN, trailing newline — identical for identical input."""
    return (
        json.dumps(doc, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        + "\n"
    ).encode("utf-8")
