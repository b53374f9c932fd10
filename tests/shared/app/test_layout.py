"""The output namespace: no input name or reference id can reach another input's objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.app import layout
from shared.app.pipeline import Outcome, SourceRef, skip_reason
from shared.app.runtime import build_pipeline
from shared.config import Config
from shared.io.storage import LocalStore, MemoryStore, ObjectStore

# Characters that matter to the layout, and a few that do not.
ALPHABET = st.sampled_from([*"./%@~_-aAF2é", "\x00", "\u2028", " "])
NASTY = ["..", ".", "", "%2F", "a%2Fb", "coco.json", "report.json", "error.json", "lock.json",
         "jobs", "masks", "_registry", "~long", "~0", "a@", "@", "~", "x.json@", ".hidden"]
segment = st.one_of(st.sampled_from(NASTY), st.text(ALPHABET, max_size=6))
names = st.lists(segment, min_size=1, max_size=4).map("/".join)
refs = st.one_of(st.none(), st.sampled_from(NASTY), st.text(ALPHABET, max_size=8),
                 names)


@given(names, names)
def test_no_input_prefix_is_inside_another(a: str, b: str) -> None:
    pa, pb = layout.input_prefix(a) + "/", layout.input_prefix(b) + "/"
    assert (pa == pb) == (a == b)
    if a != b:
        assert not pa.startswith(pb) and not pb.startswith(pa)
    assert layout.name_of_prefix(pa[:-1]) == a
    assert layout.is_output_name(pa + "coco.json")
    assert not pa.startswith(layout.LONG_NAMES + "/")
    assert layout.REGISTRY not in {pa + f for f in ("coco.json", "report.json", "error.json")}
    assert "@" not in layout.REGISTRY  # so no output name (all hold "@/") can be it


@given(st.lists(refs, min_size=1, max_size=6))
def test_job_folders_of_a_batch_are_distinct_and_never_nested(ids: list[str | None]) -> None:
    counts = {r: ids.count(r) for r in ids}
    segments = [layout.job_segment(r, i, counts[r] > 1) for i, r in enumerate(ids)]
    assert len(set(segments)) == len(segments)
    for s in segments:
        assert "/" not in s and s not in {"", ".", ".."}


@given(names, names)
def test_output_names_are_never_inputs_to_convert(a: str, b: str) -> None:
    """An output copied into the input bucket is skipped, never converted again."""
    prefix = layout.Place(layout.input_prefix(a))
    for name in (prefix.report, prefix.error, prefix / "coco.json",
                 prefix.job(layout.job_segment(b, 0, False)).report):
        assert skip_reason(name) is not None


def _job(label: str, ref: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "image_url": "https://x.example/a.jpg", "width": 10, "height": 10,
        "maker_response": {"rectangles": {"data": [
            {"_id": "r", "label": label, "coordinates": [{"x": 0, "y": 0}, {"x": .5, "y": .5}]}]}}}
    if ref is not None:
        doc["reference_id"] = ref
    return doc


def _convert(source: MemoryStore, out: ObjectStore, name: str, doc: Any) -> Outcome:
    if name.lower().endswith(".jsonl"):
        data = "\n".join(json.dumps(d) for d in (doc if isinstance(doc, list) else [doc])).encode()
    else:
        data = json.dumps(doc).encode()
    generation = source.write(name, data, "application/json", metadata={})
    pipeline = build_pipeline(Config(input_bucket="in"), source, out, open_bucket=False)
    return pipeline.process(SourceRef("in", name, generation, len(data)))


suffixes = st.sampled_from([".json", ".jsonl", ".JSON"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, suffixes, names, suffixes, st.lists(refs, min_size=1, max_size=3))
def test_converting_one_input_never_touches_another(
    a: str, sa: str, b: str, sb: str, batch_refs: list[str | None]
) -> None:
    """Input `a` (a single job) converts; then `b` (a batch whose reference ids are chosen
    adversarially, often `a`'s own name) converts twice: `a`'s objects stay byte-identical."""
    name_a, name_b = a + sa, b + sb
    if name_a == name_b or skip_reason(name_a) or skip_reason(name_b):
        return
    source, out = MemoryStore("in"), MemoryStore("out")
    first = _convert(source, out, name_a, _job("first"))
    assert first.status == "converted", first.reason
    theirs = {n: out.objects[n][0] for n in out.list(first.prefix + "/")}
    batch = [_job("second", r) for r in [*batch_refs, name_a, first.prefix]]
    for _ in range(2):
        second = _convert(source, out, name_b, batch)
        assert second.status == "converted", second.reason
        assert not second.prefix.startswith(first.prefix + "/")
        assert {n: out.objects[n][0] for n in out.list(first.prefix + "/")} == theirs
    written = set(out.list(second.prefix + "/"))
    assert written == {*second.outputs}
    assert all(n.startswith(second.prefix + "/") for n in second.outputs)


def test_names_too_long_for_their_outputs_are_poison_with_a_clear_error() -> None:
    source, out = MemoryStore("in"), MemoryStore("out")
    fits = "d/" + "a" * (1024 - 60) + ".json"
    assert _convert(source, out, fits, _job("x")).status == "converted"
    long = "d/" + "a" * 1000 + ".json"  # under the 1024 limit itself, not with /masks/...
    outcome = _convert(source, out, long, _job("x"))
    assert outcome.status == "failed"
    (error,) = outcome.errors
    assert error["error"]["code"] == "name_too_long"
    assert outcome.prefix.startswith(layout.LONG_NAMES + "/")
    assert out.list(outcome.prefix) == [outcome.prefix + "/error.json"]
    assert json.loads(out.read(outcome.prefix + "/error.json"))["source"]["name"] == long
    assert all(len(n.encode()) <= layout.MAX_NAME_BYTES for n in out.list(""))


def test_a_reference_id_too_long_fails_that_job_alone() -> None:
    source, out = MemoryStore("in"), MemoryStore("out")
    outcome = _convert(source, out, "b.json", [_job("x", "ok"), _job("y", "r" * 1100)])
    assert outcome.status == "partial"
    assert [e["error"]["code"] for e in outcome.errors] == ["name_too_long"]
    assert "b.json@/jobs/~1/error.json" in out.list("b.json@/")
    assert all(len(n.encode()) <= layout.MAX_NAME_BYTES for n in out.list(""))


def test_bucket_names_with_dot_segments_stay_inside_a_local_out_folder(tmp_path: Path) -> None:
    """What `gtcoco convert gs://... --out <folder>` does with an object named with `..`
    (legal in a bucket): its outputs stay in the folder, under encoded segments."""
    source, out = MemoryStore("in"), LocalStore(tmp_path / "inside" / "out")
    outcome = _convert(source, out, "dots/a/../../escape.json", _job("x"))
    assert outcome.status == "converted", outcome.reason
    assert (tmp_path / "inside/out/dots/a/%2E./%2E./escape.json@/coco.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inside"]
    assert sorted(p.name for p in (tmp_path / "inside").iterdir()) == ["out"]
