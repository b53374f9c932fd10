"""Batches read job by job give exactly what reading them whole gave."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import Limits
from shared.errors import ConversionError
from shared.gtstudio.batches import read_document, reference_of, split_jobs
from shared.jsonio import Chunked, load_json, load_json_lines

RECT = {"_id": "r", "label": "car", "coordinates": [{"x": 0.1, "y": 0.1}, {"x": 0.2, "y": 0.3}]}
LIMITS = Limits()


def job(ref: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"width": 10, "height": 10, "maker_response": {"rectangles": {"data": [RECT]}}}
    if ref is not None:
        out["reference_id"] = ref
    return out


refs = st.one_of(st.none(), st.integers(0, 5), st.text(max_size=4))
jobs = st.lists(
    st.one_of(refs.map(job), st.just([1, 2]), st.just("text"), st.just({"meta": {"reference_id": "m"}})),
    min_size=1,
    max_size=8,
)


def whole(data: bytes, name: str) -> tuple[list[tuple[str, Any]], list[str | None]]:
    if name.endswith(".jsonl"):
        doc: Any = load_json_lines(data, LIMITS.max_json_depth, LIMITS.max_json_bytes)
    else:
        doc = load_json(data, LIMITS.max_json_depth, LIMITS.max_json_bytes)
    items = split_jobs(doc, LIMITS)
    return items, [reference_of(item, ptr, LIMITS) for ptr, item in items]


def chunked(data: bytes, size: int, opened: list[int] | None = None) -> Chunked:
    """`data` as ranged reads of `size` bytes, never held whole by the reader."""

    def chunks() -> Any:
        if opened is not None:
            opened.append(1)
        return (data[i : i + size] for i in range(0, len(data), size))

    return Chunked(len(data), chunks)


def envelope(items: list[Any]) -> dict[str, Any]:
    entries: list[Any] = [{"type": "JSON", "data": item} for item in items]
    entries.insert(len(entries) // 2, {"type": "IMAGE", "url": "x"})  # not a job: skipped
    return {"project": "p", "export_data": entries, "count": len(entries)}


@settings(max_examples=60, deadline=None)
@given(jobs, st.sampled_from(["array", "envelope", "jsonl"]), st.sampled_from([None, 2]))
def test_streamed_batch_equals_the_whole_read(items: list[Any], form: str, indent: int | None) -> None:
    if form == "jsonl":
        data, name = b"\n".join(json.dumps(i).encode() for i in items) + b"\n\n", "b.jsonl"
    else:
        doc = items if form == "array" else envelope(items)
        data, name = json.dumps(doc, indent=indent).encode(), "b.json"
    document = read_document(data, name, LIMITS)
    expected_items, expected_refs = whole(data, name)
    assert document.is_batch
    assert document._loaded is None  # read job by job, not whole
    assert list(document.jobs()) == expected_items
    assert document.references == expected_refs


@settings(max_examples=80, deadline=None)
@given(
    jobs,
    st.sampled_from(["array", "envelope", "jsonl"]),
    st.sampled_from([None, 1]),
    st.integers(1, 40),
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\n "]),
)
def test_a_batch_read_in_chunks_equals_the_whole_read(
    items: list[Any], form: str, indent: int | None, size: int, head: bytes
) -> None:
    # Chunks cut anywhere: inside keys, numbers, literals and multi-byte characters.
    if form == "jsonl":
        data, name = b"\r\n".join(json.dumps(i, ensure_ascii=False).encode() for i in items), "b.jsonl"
    else:
        doc = items if form == "array" else envelope(items)
        data, name = json.dumps(doc, indent=indent, ensure_ascii=False).encode(), "b.json"
    data = head + data
    opened: list[int] = []
    document = read_document(chunked(data, size, opened), name, LIMITS)
    expected_items, expected_refs = whole(data, name)
    assert document.references == expected_refs
    assert list(document.jobs()) == expected_items
    assert len(opened) == 2  # two passes over the object, each reading it again


def test_a_chunked_batch_is_never_held_whole() -> None:
    data = json.dumps([job(i) for i in range(200)]).encode()
    document = read_document(chunked(data, 512), "b.json", LIMITS)
    assert document._source is not None and document._source.data is None
    held = [v for v in vars(document).values() if isinstance(v, (bytes, str)) and len(v) > 512]
    assert not held
    assert [p for p, _ in document.jobs()] == [f"/{i}" for i in range(200)]


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'[{"a": 1}, {"b": ]', "b.json"),  # invalid after valid jobs
        (b'[{"a": 1}] x', "b.json"),  # extra data
        (b'{"export_data": [{"data": {}}], "export_data": []}', "b.json"),  # repeated key
        (b"[" + b"[" * 80 + b"]" * 80 + b"]", "b.json"),  # too deep inside one job
        (b'[{"a": "\\ud800"}]', "b.json"),  # lone surrogate
        (b"[1" + b"0" * 5000 + b"]", "b.json"),  # integer past Python's limit
        (b'{"a": 1}\n{"b": \n', "b.jsonl"),
        (b'[{"a": 1}, {"b": "\xc3"}]', "b.json"),  # not UTF-8, cut mid-character
        (b'{"a": 1}\n\n{"b": "\xff"}\n', "b.jsonl"),
        (b"[]", "b.json"),
        (b'{"export_data": [{"type": "IMAGE"}]}', "b.json"),
    ],
)
def test_a_bad_batch_fails_exactly_as_read_whole(data: bytes, name: str) -> None:
    with pytest.raises(ConversionError) as whole_error:
        whole(data, name)
    for source in (data, chunked(data, 3)):
        with pytest.raises(ConversionError) as streamed:
            read_document(source, name, LIMITS)
        assert streamed.value.as_dict() == whole_error.value.as_dict()
        assert type(streamed.value) is type(whole_error.value)


def test_too_many_jobs_counts_them_all() -> None:
    limits = Limits(max_batch_jobs=3)
    with pytest.raises(ConversionError, match="5 jobs in one batch, limit 3"):
        read_document(json.dumps([job(i) for i in range(5)]).encode(), "b.json", limits)


def test_an_envelope_that_is_a_legend_is_read_whole() -> None:
    doc = {"legend": {"#ff0000": "car"}, "export_data": [{"type": "JSON", "data": job(1)}]}
    document = read_document(json.dumps(doc).encode(), "x.json", LIMITS)
    assert not document.is_batch and document.doc == doc


def test_single_job_is_not_a_batch() -> None:
    document = read_document(json.dumps(job("a")).encode(), "a.json", LIMITS)
    assert not document.is_batch and document.doc == job("a")


def test_a_batch_over_the_json_limit_is_refused_read_whole_or_in_chunks() -> None:
    limits = Limits(max_json_bytes=300)
    data = json.dumps([job(i) for i in range(10)]).encode()
    for source in (data, chunked(data, 64)):
        with pytest.raises(ConversionError) as caught:
            read_document(source, "b.json", limits)
        assert caught.value.code == "json_too_large"
        assert caught.value.message == f"JSON is {len(data)} bytes, limit 300"


def test_a_source_longer_than_it_said_is_still_bounded() -> None:
    """The size a store reports is checked up front; the bytes read are counted too, so an
    object that grew (or a store that lied) cannot be read past the limit."""
    limits = Limits(max_json_bytes=300)
    data = json.dumps([job(i) for i in range(10)]).encode()
    lying = Chunked(100, chunked(data, 64).open)
    with pytest.raises(ConversionError) as caught:
        read_document(lying, "b.json", limits)
    assert caught.value.code == "json_too_large"
