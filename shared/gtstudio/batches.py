"""Documents: one job, or a batch whose jobs are parsed one at a time.

A batch (a JSON array, GT Studio's `export_data` envelope, or JSONL) is read in two passes
over its text: the first checks every job's JSON and learns its reference id (job folders
are named from those, and a repeated id changes them); the second hands out the jobs one
by one.  Memory is the text plus one job, not every job's parsed tree (about 27 KiB each).
Whatever the streaming reader does not handle is read whole, the way it always was, so
errors and outputs do not depend on which path read the document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.config import Limits
from shared.errors import ConversionError, TooLargeError
from shared.gtstudio.jobs import parse_job
from shared.gtstudio.legend import is_bare_legend
from shared.jsonio import NotStreamable, decode_text, load_json, load_json_lines, stream_array


@dataclass(frozen=True)
class _Item:
    pointer: str
    start: int
    end: int
    unwrap: bool  # an `export_data` entry: the job is its `data`


@dataclass
class Document:
    """`doc` for a document that is not a batch; else `len(self)` jobs, read by `jobs`."""

    doc: Any = None
    is_batch: bool = False
    references: list[str | None] = field(default_factory=list)  # each job's, in order
    _text: str | list[bytes] = ""
    _items: list[_Item] = field(default_factory=list)
    _loaded: list[tuple[str, Any]] | None = None  # a batch read whole

    def __len__(self) -> int:
        return len(self.references)

    def jobs(self) -> Iterator[tuple[str, Any]]:
        """(JSON pointer, raw job) for each job of a batch, parsed as it is asked for."""
        if self._loaded is not None:
            yield from self._loaded
            return
        for item in self._items:
            if isinstance(self._text, list):
                value = json.loads(self._text[item.start])
            else:
                value = json.loads(self._text[item.start : item.end])
            yield item.pointer, value["data"] if item.unwrap else value


def loose_reference(item: Any) -> str | None:
    """A bad job's reference id, if one can be seen, so its error gets a stable name."""
    if isinstance(item, dict):
        for holder in (item, item.get("meta"), item.get("build"), item.get("data")):
            if isinstance(holder, dict) and isinstance(holder.get("reference_id"), (str, int)):
                return str(holder["reference_id"])
    return None


def reference_of(item: Any, pointer: str, limits: Limits) -> str | None:
    try:
        return parse_job(item, pointer, limits).reference_id
    except ConversionError:
        return loose_reference(item)


def _envelope_entry(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and str(item.get("type", "JSON")).upper() == "JSON"
        and "data" in item
    )


def split_jobs(doc: Any, limits: Limits) -> list[tuple[str, Any]]:
    """Cut a document into (pointer, job) pairs: a JSON array, `export_data`, or one job."""
    if isinstance(doc, list):
        items = [(f"/{i}", item) for i, item in enumerate(doc)]
    elif isinstance(doc, dict) and isinstance(doc.get("export_data"), list):
        items = [
            (f"/export_data/{i}/data", item["data"])
            for i, item in enumerate(doc["export_data"])
            if _envelope_entry(item)
        ]
    else:
        return [("", doc)]
    _check_count(len(items), limits)
    return items


def _check_count(count: int, limits: Limits) -> None:
    if count > limits.max_batch_jobs:
        raise TooLargeError(
            "too_many_jobs", f"{count} jobs in one batch, limit {limits.max_batch_jobs}"
        )
    if not count:
        raise ConversionError("empty_batch", "the batch holds no jobs", "")


def whole_document(doc: Any, limits: Limits) -> Document:
    """The document `doc` already parsed.  A legend is never a batch (its pair's rules
    decide what it is), whatever keys it holds."""
    if is_bare_legend(doc):
        return Document(doc=doc)
    items = split_jobs(doc, limits)
    if len(items) == 1 and items[0][0] == "":
        return Document(doc=doc)
    refs = [reference_of(item, pointer, limits) for pointer, item in items]
    return Document(is_batch=True, references=refs, _loaded=items)


def read_document(data: bytes, name: str, limits: Limits) -> Document:
    """The document an object holds; `name` says whether it is JSONL."""
    if name.lower().endswith(".jsonl"):
        return _read_lines(data, limits)
    text = decode_text(data, limits.max_json_bytes)
    head = text.lstrip(" \t\n\r")[:1]
    key = None if head == "[" else "export_data" if '"export_data"' in text else ""
    if head in {"[", "{"} and key != "":
        try:
            return _read_streamed(text, key, limits)
        except NotStreamable:
            pass  # read whole: the canonical errors (or a shape the stream does not read)
    return whole_document(load_json(data, limits.max_json_depth, limits.max_json_bytes), limits)


def _read_streamed(text: str, key: str | None, limits: Limits) -> Document:
    items: list[_Item] = []
    refs: list[str | None] = []
    # A top-level `legend` makes an object a raster legend, not a batch: read whole.
    stream = stream_array(text, limits.max_json_depth, key, refused_keys=("legend",))
    for position, (start, end, value) in enumerate(stream):
        if key is None:
            pointer, job, unwrap = f"/{position}", value, False
        elif _envelope_entry(value):
            pointer, job, unwrap = f"/export_data/{position}/data", value["data"], True
        else:
            continue
        items.append(_Item(pointer, start, end, unwrap))
        # Past the limit the batch is refused: counted, not parsed.
        refs.append(
            reference_of(job, pointer, limits) if len(refs) < limits.max_batch_jobs else None
        )
    _check_count(len(items), limits)
    return Document(is_batch=True, references=refs, _text=text, _items=items)


def _read_lines(data: bytes, limits: Limits) -> Document:
    """JSONL, a job a line: every line checked first (the error names its line), then each
    parsed again as it is asked for."""
    if len(data) > limits.max_json_bytes:
        load_json_lines(data, limits.max_json_depth, limits.max_json_bytes)  # raises
    lines = [line for line in data.splitlines() if line.strip()]
    refs: list[str | None] = []
    for number, line in enumerate(lines):
        try:
            value = load_json(line, limits.max_json_depth, limits.max_json_bytes)
        except ConversionError:
            load_json_lines(data, limits.max_json_depth, limits.max_json_bytes)  # its error
            raise
        refs.append(
            reference_of(value, f"/{number}", limits) if number < limits.max_batch_jobs else None
        )
    _check_count(len(refs), limits)
    items = [_Item(f"/{i}", i, i, False) for i in range(len(lines))]
    return Document(is_batch=True, references=refs, _text=lines, _items=items)
