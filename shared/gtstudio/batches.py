"""Documents: one job, or a batch whose jobs are parsed one at a time.

A batch (a JSON array, GT Studio's `export_data` envelope, or JSONL) is read in two passes,
each reading the object again in chunks: the first checks every job's JSON and learns its
reference id (job folders are named from those, and a repeated id changes them); the
second hands out the jobs one by one.  Memory is a chunk plus one job, not the batch's
bytes, its text or every job's parsed tree (about 27 KiB each).
Whatever the streaming reader does not handle is read whole, the way it always was, so
errors and outputs do not depend on which path read the document.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.config import Limits
from shared.errors import ConversionError, TooLargeError
from shared.gtstudio.jobs import parse_job
from shared.gtstudio.legend import is_bare_legend
from shared.jsonio import Chunked, NotStreamable, load_json, stream_array, stream_lines


@dataclass(frozen=True)
class _Item:
    position: int  # in the array the stream reads
    pointer: str
    unwrap: bool  # an `export_data` entry: the job is its `data`


@dataclass
class Document:
    """`doc` for a document that is not a batch; else `len(self)` jobs, read by `jobs`."""

    doc: Any = None
    is_batch: bool = False
    references: list[str | None] = field(default_factory=list)  # each job's, in order
    _source: Chunked | None = None
    _lines: bool = False
    _items: list[_Item] = field(default_factory=list)
    _loaded: list[tuple[str, Any]] | None = None  # a batch read whole

    def __len__(self) -> int:
        return len(self.references)

    def jobs(self) -> Iterator[tuple[str, Any]]:
        """(JSON pointer, raw job) for each job of a batch, read again from its source and
        parsed as it is asked for."""
        if self._loaded is not None:
            yield from self._loaded
            return
        assert self._source is not None
        if self._lines:
            lines = (line for line in stream_lines(self._source.open()) if line.strip())
            for item, line in zip(self._items, lines, strict=True):
                yield item.pointer, json.loads(line)
            return
        # The first pass checked the whole document; entries it skipped are skipped again.
        wanted = {item.position: item for item in self._items}
        # The first pass checked every item: the second does not walk them again.
        stream = stream_array(self._source.open(), None, self._source.size, "export_data")
        for position, (_, value) in enumerate(stream):
            if position in wanted:
                found = wanted[position]
                yield found.pointer, value["data"] if found.unwrap else value


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


def read_document(source: bytes | Chunked, name: str, limits: Limits) -> Document:
    """The document an object holds; `name` says whether it is JSONL.  A batch is read in
    chunks, twice, and never held whole."""
    if isinstance(source, bytes):
        source = Chunked.of(source)
    if name.lower().endswith(".jsonl"):
        return _read_lines(source, limits)
    if source.size > limits.max_json_bytes:
        raise TooLargeError(
            "json_too_large", f"JSON is {source.size} bytes, limit {limits.max_json_bytes}"
        )
    if not _single_job(source.data):
        try:
            return _read_streamed(source, limits)
        except NotStreamable:
            pass  # read whole: the canonical errors (or a shape the stream does not read)
    data = source.whole()
    return whole_document(load_json(data, limits.max_json_depth, limits.max_json_bytes), limits)


def _single_job(data: bytes | None) -> bool:
    """Held whole, an object without `export_data` is one job: read it whole at once."""
    if data is None:
        return False
    head = data.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\n\r")[:1]
    return head != b"[" and (head != b"{" or b'"export_data"' not in data)


def _read_streamed(source: Chunked, limits: Limits) -> Document:
    items: list[_Item] = []
    refs: list[str | None] = []
    # A top-level `legend` makes an object a raster legend, not a batch: read whole.
    stream = stream_array(
        source.open(), limits.max_json_depth, limits.max_json_bytes, "export_data", ("legend",)
    )
    for position, (key, value) in enumerate(stream):
        if key is None:
            pointer, job, unwrap = f"/{position}", value, False
        elif _envelope_entry(value):
            pointer, job, unwrap = f"/export_data/{position}/data", value["data"], True
        else:
            continue
        items.append(_Item(position, pointer, unwrap))
        # Past the limit the batch is refused: counted, not parsed.
        refs.append(
            reference_of(job, pointer, limits) if len(refs) < limits.max_batch_jobs else None
        )
    _check_count(len(items), limits)
    return Document(is_batch=True, references=refs, _source=source, _items=items)


def _read_lines(source: Chunked, limits: Limits) -> Document:
    """JSONL, a job a line: every line checked first (the error names its line), then each
    parsed again as it is asked for."""
    if source.size > limits.max_json_bytes:
        raise TooLargeError(
            "json_too_large", f"JSONL is {source.size} bytes, limit {limits.max_json_bytes}"
        )
    refs: list[str | None] = []
    for number, line in enumerate(stream_lines(source.open()), start=1):
        if not line.strip():
            continue
        try:
            value = load_json(line, limits.max_json_depth, limits.max_json_bytes)
        except ConversionError as exc:
            raise type(exc)(exc.code, f"line {number}: {exc.message}", f"/{len(refs)}") from None
        refs.append(
            reference_of(value, f"/{len(refs)}", limits)
            if len(refs) < limits.max_batch_jobs
            else None
        )
    _check_count(len(refs), limits)
    items = [_Item(i, f"/{i}", False) for i in range(len(refs))]
    return Document(is_batch=True, references=refs, _source=source, _lines=True, _items=items)
