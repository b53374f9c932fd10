"""JSON in and out: bounded parsing, and canonical bytes for deterministic outputs."""

from __future__ import annotations

import json
from typing import Any

from shared.errors import BadRequest, ConversionError, TooLargeError


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_tree(doc: Any, max_depth: int) -> None:
    """Nesting depth and string encodability, iteratively (a recursive walk would hit
    Python's own limit).  JSON's `\\ud800` escapes decode to lone surrogates, which no
    UTF-8 output can hold: refused here so that no writer later fails on them."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                raise BadRequest("json_too_deep", f"JSON nesting exceeds the limit of {max_depth}")
            for k, v in node.items():
                if _has_surrogate(k):
                    raise BadRequest("invalid_encoding", "a key holds a lone UTF-16 surrogate")
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            if depth > max_depth:
                raise BadRequest("json_too_deep", f"JSON nesting exceeds the limit of {max_depth}")
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str) and _has_surrogate(node):
            raise BadRequest("invalid_encoding", "a string holds a lone UTF-16 surrogate")


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
        raise BadRequest(
            "invalid_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        # NaN/Infinity literals (and 1e999) are let through so that the parser of shapes can
        # name the exact field with a JSON pointer; every number is checked where it is used.
        doc = json.loads(text)
    except RecursionError:
        raise BadRequest(
            "json_too_deep", f"JSON nesting exceeds the limit of {max_depth}"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            "invalid_json", f"invalid JSON: {exc.msg} ({_error_pointer(text, exc.pos)})"
        ) from None
    except ValueError as exc:
        # Python refuses integers of more than 4300 digits (a CPU guard of its own).
        raise BadRequest("invalid_json", f"invalid JSON: {exc}") from None
    _check_tree(doc, max_depth)
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
