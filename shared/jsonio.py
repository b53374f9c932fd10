"""JSON in and out: bounded parsing, and canonical bytes for deterministic outputs."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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
_SCAN = json.decoder.scanstring  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Chunked:
    """An object's bytes, as reads that can be started over (each pass reads it again, in
    chunks); `data` when it is held whole anyway."""

    size: int
    open: Callable[[], Iterator[bytes]]
    data: bytes | None = None

    @classmethod
    def of(cls, data: bytes) -> Chunked:
        return cls(len(data), lambda: iter((data,)), data)

    def whole(self) -> bytes:
        return self.data if self.data is not None else b"".join(self.open())


class NotStreamable(Exception):
    """The document is not one `stream_array` handles; read it whole instead (`load_json`
    then gives the canonical error, if there is one)."""


class _Text:
    """A document's text decoded from its chunks as far as the reader has got, keeping only
    what is not yet consumed: memory is one chunk plus the value being read, whatever the
    document's size."""

    def __init__(self, chunks: Iterable[bytes], max_bytes: int) -> None:
        self._chunks = iter(chunks)
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._max_bytes, self._read = max_bytes, 0
        self.text, self.pos, self.eof = "", 0, False
        self.dropped = 0  # characters consumed and dropped from the front of `text`

    def more(self) -> bool:
        """Decode the next chunk onto the text; False at the end of the document."""
        if self.eof:
            return False
        chunk = next(self._chunks, None)
        if chunk is None:
            self.eof = True
        else:
            self._read += len(chunk)
            if self._read > self._max_bytes:
                raise TooLargeError(
                    "json_too_large", f"JSON is over {self._max_bytes} bytes, the limit"
                )
        try:
            decoded = self._decoder.decode(chunk or b"", self.eof)
        except UnicodeDecodeError as exc:
            raise NotStreamable(str(exc)) from None
        del chunk
        # What is consumed is dropped as the new text is joined on: one copy, not two.
        self.dropped += self.pos
        self.text, self.pos = (
            self.text[self.pos :] + decoded if self.pos else self.text + decoded,
            0,
        )
        return True

    def skip(self) -> None:
        while True:
            match = _WS.match(self.text, self.pos)
            assert match is not None  # `*` always matches
            self.pos = match.end()
            if self.pos < len(self.text) or not self.more():
                return

    def at(self, char: str) -> bool:
        """Whether the next character (after white space) is `char`; consumed if so."""
        self.skip()
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def _parse(self, parse: Callable[[str, int], tuple[Any, int]]) -> Any:
        # A value cut by the end of the text fails (or, for a number, parses short): more
        # text is decoded, at least doubling what is held, until it parses with a character
        # after it or the document ends.  Each attempt costs at most the value itself.
        while True:
            held = len(self.text) - self.pos
            try:
                value, end = parse(self.text, self.pos)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                if not self._grow(held):
                    raise NotStreamable(str(exc)) from None
                continue
            if end < len(self.text) or self.eof:
                self.pos = end
                return value
            self._grow(held)

    def _grow(self, held: int) -> bool:
        grown = False
        while len(self.text) - self.pos < 2 * held + 1 and self.more():
            grown = True
        return grown

    def value(self) -> Any:
        self.skip()
        return self._parse(_DECODER.raw_decode)

    def checked_value(self, max_depth: int | None) -> Any:
        """The next value, checked as `load_json` checks a document: depth and lone
        surrogates.  The walk is skipped when the value's own text shows it cannot fail:
        fewer brackets than the depth allowed and no `\\u` escape (only an escape can
        make a surrogate)."""
        self.skip()
        start = self.dropped + self.pos  # a refill may drop the text before the value
        value = self._parse(_DECODER.raw_decode)
        if max_depth is None:
            return value
        raw = self.text[start - self.dropped : self.pos]
        if "\\u" in raw or raw.count("[") + raw.count("{") >= max_depth:
            _check_tree(value, max_depth)
        return value

    def name(self) -> str:
        self.skip()
        if not self.text.startswith('"', self.pos):
            raise NotStreamable("expected a key")
        self.pos += 1
        name: str = self._parse(_SCAN)
        return name


def _items(text: _Text, item_depth: int | None) -> Iterator[Any]:
    """Each item of the array whose `[` was just read, checked as `load_json` checks a
    whole document (`item_depth` None: already checked by an earlier pass)."""
    if text.at("]"):
        return
    while True:
        try:
            value = text.checked_value(item_depth)
        except ConversionError as exc:
            raise NotStreamable(exc.message) from None
        yield value
        if text.at(","):
            continue
        if text.at("]"):
            return
        raise NotStreamable("expected , or ]")


def stream_array(
    chunks: Iterable[bytes],
    max_depth: int | None,
    max_bytes: int,
    key: str | None = None,
    refused_keys: tuple[str, ...] = (),
) -> Iterator[tuple[str | None, Any]]:
    """Items of a document's array one at a time, its text read from `chunks` as far as
    needed: the document itself if it is an array (each item paired with None), else the
    array under `key` in its top-level object (paired with `key`).  Anything else, invalid JSON included, raises `NotStreamable`; nothing
    the caller converts before it is lost, because callers run it once to the end before
    converting.  `max_depth` None: the items were checked by an earlier pass over the same
    bytes, and are not walked again."""
    text = _Text(chunks, max_bytes)
    if text.at("["):
        for value in _items(text, None if max_depth is None else max_depth - 1):
            yield None, value
    elif key is None:
        raise NotStreamable("not an array")
    else:
        for value in _object_member(text, key, max_depth, refused_keys):
            yield key, value
    text.skip()
    if text.pos < len(text.text):
        raise NotStreamable("extra data after the document")


def _object_member(
    text: _Text, key: str, max_depth: int | None, refused_keys: tuple[str, ...]
) -> Iterator[Any]:
    if not text.at("{"):
        raise NotStreamable("not an object")
    seen = False
    if text.at("}"):
        raise NotStreamable(f"no {key}")
    while True:
        name = text.name()
        if _has_surrogate(name) or name in refused_keys:
            raise NotStreamable(f"key {name!r}")
        if not text.at(":"):
            raise NotStreamable("expected :")
        if name == key:
            if seen or not text.at("["):
                raise NotStreamable(f"{key} is not one array")
            seen = True
            yield from _items(text, None if max_depth is None else max_depth - 2)
        else:
            value = text.value()
            try:
                if max_depth is not None:
                    _check_tree(value, max_depth - 1)
            except ConversionError as exc:
                raise NotStreamable(exc.message) from None
        if text.at(","):
            continue
        if text.at("}"):
            if not seen:
                raise NotStreamable(f"no {key}")
            return
        raise NotStreamable("expected , or }")


def stream_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a text read in chunks, as `bytes.splitlines` cuts the whole text."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        cut = rest.rfind(b"\n")
        if cut < 0:
            continue
        yield from rest[: cut + 1].splitlines()
        rest = rest[cut + 1 :]
    yield from rest.splitlines()
