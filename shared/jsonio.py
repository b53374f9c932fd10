"""JSON in and out: bounded parsing, and canonical bytes for deterministic outputs."""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator
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


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class NotStreamable(Exception):
    """The document is not one `stream_array` handles; read it whole instead (`load_json`
    then gives the canonical error, if there is one)."""


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    assert match is not None  # `*` always matches
    return match.end()


def _items(text: str, pos: int, item_depth: int) -> Generator[tuple[int, int, Any], None, int]:
    """(start, end, value) of each item of the array at `text[pos] == "["`, each value
    checked as `load_json` checks a whole document; returns the position after the array."""
    pos = _skip(text, pos + 1)
    if text.startswith("]", pos):
        return pos + 1
    while True:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise NotStreamable(str(exc)) from None
        try:
            _check_tree(value, item_depth)
        except ConversionError as exc:
            raise NotStreamable(exc.message) from None
        yield pos, end, value
        pos = _skip(text, end)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("]", pos):
            return pos + 1
        else:
            raise NotStreamable(f"expected , or ] at {pos}")


def stream_array(
    text: str, max_depth: int, key: str | None = None, refused_keys: tuple[str, ...] = ()
) -> Iterator[tuple[int, int, Any]]:
    """Items of a document's array one at a time, with their spans in `text`: the
    document's own array (`key` None) or the array under one key of its top-level object.
    Anything else, invalid JSON included, raises `NotStreamable`; nothing the caller
    converts before it is lost, because callers run it once to the end before converting."""
    pos = _skip(text, 0)
    if key is None:
        if not text.startswith("[", pos):
            raise NotStreamable("not an array")
        end = yield from _items(text, pos, max_depth - 1)
    else:
        end = yield from _object_member(text, pos, key, max_depth, refused_keys)
    if _skip(text, end) != len(text):
        raise NotStreamable("extra data after the document")


def _object_member(
    text: str, pos: int, key: str, max_depth: int, refused_keys: tuple[str, ...]
) -> Generator[tuple[int, int, Any], None, int]:
    if not text.startswith("{", pos):
        raise NotStreamable("not an object")
    pos, seen = _skip(text, pos + 1), False
    if text.startswith("}", pos):
        raise NotStreamable(f"no {key}")
    while True:
        if not text.startswith('"', pos):
            raise NotStreamable("expected a key")
        try:
            name, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise NotStreamable(str(exc)) from None
        if _has_surrogate(name) or name in refused_keys:
            raise NotStreamable(f"key {name!r}")
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise NotStreamable("expected :")
        pos = _skip(text, pos + 1)
        if name == key:
            if seen or not text.startswith("[", pos):
                raise NotStreamable(f"{key} is not one array")
            seen = True
            pos = yield from _items(text, pos, max_depth - 2)
        else:
            try:
                value, pos = _DECODER.raw_decode(text, pos)
                _check_tree(value, max_depth - 1)
            except (ValueError, RecursionError, ConversionError) as exc:
                raise NotStreamable(str(exc)) from None
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("}", pos):
            if not seen:
                raise NotStreamable(f"no {key}")
            return pos + 1
        else:
            raise NotStreamable(f"expected , or }} at {pos}")


def decode_text(data: bytes, max_bytes: int) -> str:
    """The document's text, with `load_json`'s size and encoding checks."""
    if len(data) > max_bytes:
        raise TooLargeError("json_too_large", f"JSON is {len(data)} bytes, limit {max_bytes}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "invalid_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
