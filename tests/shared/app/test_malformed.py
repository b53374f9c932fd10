"""Every malformed input gets an `error.json` in its own prefix with a specific code and JSON pointer,
and the rest of the run still converts."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.app.cli import main
from shared.app.pipeline import SourceRef
from shared.app.runtime import build_pipeline
from shared.config import Config, Limits
from shared.io.storage import LocalStore, MemoryStore, ObjectStore
from tests.cocoutil import load_coco

GOOD = {"image_url": "https://x.example/a.jpg", "width": 100, "height": 100,
        "maker_response": {"rectangles": {"data": [
            {"_id": "g", "label": "car", "coordinates": [{"x": 0.1, "y": 0.1},
                                                         {"x": 0.5, "y": 0.5}]}]}}}


def rect(coords: Any) -> dict[str, Any]:
    return {"image_url": "https://x.example/a.jpg", "width": 100, "height": 100,
            "maker_response": {"rectangles": {"data": [{"label": "car", "coordinates": coords}]}}}


def deep(n: int) -> str:
    return "[" * n + "]" * n


Run = tuple[int, Path, str]  # exit code, output folder, stdout
R0 = "/maker_response/rectangles/data/0"
CASES = [
    # (name, file bytes, error key, code, pointer)
    ("truncated.json", json.dumps(GOOD)[:60].encode(), "truncated", "invalid_json", ""),
    ("not_utf8.json", b'{"image_url": "\xff\xfe"}', "not_utf8", "invalid_encoding", ""),
    ("number.json", b"42", "number", "invalid_type", ""),
    ("unknown.json", b'{"hello": "world"}', "unknown", "unknown_shape", ""),
    ("deep.json", deep(500).encode(), "deep", "json_too_deep", ""),
    ("very_deep.json", deep(100_000).encode(), "very_deep", "json_too_deep", ""),
    ("maker_str.json", b'{"image_url": "u", "maker_response": "x"}', "maker_str",
     "invalid_type", "/maker_response"),
    ("rect_dict.json", json.dumps({"image_url": "u", "maker_response": {
        "rectangles": {"data": {"a": 1}}}}).encode(), "rect_dict", "invalid_type",
     "/maker_response/rectangles/data"),
    ("ann_str.json", json.dumps({"image_url": "u", "maker_response": {
        "polygons": {"data": ["p"]}}}).encode(), "ann_str", "invalid_type",
     "/maker_response/polygons/data/0"),
    ("no_label.json", json.dumps(rect([{"x": 0, "y": 0}]) | {}).replace('"label": "car", ', "")
     .encode(), "no_label", "invalid_label", R0 + "/label"),
    ("coord_str.json", json.dumps(rect([{"x": 0, "y": 0}, {"x": "1", "y": 0}])).encode(),
     "coord_str", "invalid_coordinate", R0 + "/coordinates/1/x"),
    ("coord_nan.json", json.dumps(rect([{"x": 0, "y": 0}, {"x": 0.5, "y": float("nan")}])).encode(),
     "coord_nan", "invalid_coordinate", R0 + "/coordinates/1/y"),
    ("coord_inf.json", b'{"width": 9, "height": 9, "image_url": "u", "maker_response": {'
     b'"rectangles": {"data": [{"label": "c", "coordinates": [{"x": 1e999, "y": 0}]}]}}}',
     "coord_inf", "invalid_coordinate", R0 + "/coordinates/0/x"),
    ("coord_huge.json", json.dumps(rect([{"x": 1e308, "y": 0}])).encode(), "coord_huge",
     "coordinate_out_of_range", R0 + "/coordinates/0/x"),
    # An integer past a float's range (JSON allows it; math.isfinite would overflow on it).
    ("coord_long_int.json", json.dumps(rect([{"x": 0, "y": 0}, {"x": 10**400, "y": 0}])).encode(),
     "coord_long_int", "coordinate_out_of_range", R0 + "/coordinates/1/x"),
    ("polygon_long_int.json", json.dumps({"image_url": "u", "width": 9, "height": 9,
                                          "maker_response": {"polygons": {"data": [{
                                              "label": "p", "points": {
                                                  "p1": {"x": 0.1, "y": 0.1},
                                                  "p2": {"x": 0.5, "y": -(10**400)},
                                                  "p3": {"x": 0.5, "y": 0.5}}}]}}}).encode(),
     "polygon_long_int", "coordinate_out_of_range", "/maker_response/polygons/data/0/points/p2/y"),
    ("width_long_int.json", json.dumps({"image_url": "u", "width": 10**400, "height": 9,
                                        "maker_response": {}}).encode(), "width_long_int",
     "invalid_dimension", "/width"),
    ("coord_null.json", json.dumps(rect([None])).encode(), "coord_null", "invalid_type",
     R0 + "/coordinates/0"),
    ("many_points.json", json.dumps({"image_url": "u", "width": 9, "height": 9,
                                     "maker_response": {"polygons": {"data": [{
                                         "label": "p", "points": {f"p{i}": {"x": 0.5, "y": 0.5}
                                                                  for i in range(100_000)}}]}}}
                                    ).encode(), "many_points", "too_many_points",
     "/maker_response/polygons/data/0/points"),
    ("bad_width.json", json.dumps(GOOD | {"width": -3}).encode(), "bad_width",
     "invalid_dimension", "/width"),
    ("no_size.json", json.dumps({k: v for k, v in GOOD.items() if k not in {"width", "height"}}
                                | {"image_url": "http://10.0.0.1/x.jpg"}).encode(), "no_size",
     "image_size_unavailable", "/image_url"),
    ("video_no_size.json", json.dumps({"video_data": {"frames": [
        {"src": "http://10.0.0.1/f0.jpg", "frame_id": "0"}]}, "maker_response": {
            "video2d": {"data": {"annotations": []}}}}).encode(), "video_no_size",
     "image_size_unavailable", "/video_data/frames/0/src"),
    ("landmark_label.json", json.dumps({"image_url": "u", "width": 9, "height": 9,
                                        "maker_response": {"landmarks": {"data": [{
                                            "label": "f", "points": {"p1": {
                                                "x": 0, "y": 0, "label": "nose"}}}]}}}).encode(),
     "landmark_label", "invalid_landmark", "/maker_response/landmarks/data/0/points/p1/label"),
    ("raster_data.json", json.dumps({"image_url": "u", "maker_response": {
        "raster": {"data": "x"}}}).encode(), "raster_data", "invalid_type",
     "/maker_response/raster"),
    ("empty_batch.json", b"[]", "empty_batch", "empty_batch", ""),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, str]:
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("out")
    for name, data, *_ in CASES:
        (src / name).write_bytes(data)
    (src / "good.json").write_text(json.dumps(GOOD))
    (src / "mixed_batch.json").write_text(json.dumps([GOOD | {"reference_id": "ok"},
                                                      rect([{"x": "?", "y": 0}]) |
                                                      {"reference_id": "bad"}]))
    (src / "lines.jsonl").write_text(json.dumps(GOOD) + "\n{not json\n")
    stdout = io.StringIO()
    code = main(["convert", str(src), "--out", str(out)], out=stdout, err=io.StringIO())
    return code, out, stdout.getvalue()


@pytest.mark.parametrize(("key", "code", "pointer"), [c[2:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_malformed_input_gets_a_specific_error(run: Run, key: str, code: str, pointer: str) -> None:
    _, out, _ = run
    doc = json.loads((out / f"{key}.json@" / "error.json").read_text())
    assert doc["error"]["code"] == code
    assert doc["error"]["pointer"] == pointer
    assert doc["error"]["message"]
    assert doc["source"]["name"] == f"{key}.json"
    assert sorted(p.name for p in (out / f"{key}.json@").iterdir()) == ["error.json"]


def test_the_rest_of_the_run_still_converts(run: Run) -> None:
    code, out, stdout = run
    assert code == 1
    load_coco(out / "good.json@" / "coco.json")
    assert json.loads((out / "good.json@" / "report.json").read_text())["status"] == "converted"
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith("gtcoco: ") and f"{len(CASES) + 1} failed" in summary


def test_a_bad_job_in_a_batch_fails_alone(run: Run) -> None:
    _, out, _ = run
    load_coco(out / "mixed_batch.json@" / "jobs" / "ok" / "coco.json")
    err = json.loads((out / "mixed_batch.json@" / "jobs" / "bad" / "error.json").read_text())
    assert err["error"] == {"code": "invalid_coordinate", "message": "x must be a number",
                            "pointer": "/1/maker_response/rectangles/data/0/coordinates/0/x"}
    report = json.loads((out / "mixed_batch.json@" / "report.json").read_text())
    assert report["status"] == "partial"
    assert [j["status"] for j in report["jobs"]] == ["converted", "failed"]


def test_a_bad_jsonl_line_names_its_line(run: Run) -> None:
    _, out, _ = run
    err = json.loads((out / "lines.jsonl@" / "error.json").read_text())["error"]
    assert err["code"] == "invalid_json" and err["message"].startswith("line 2:")


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_a_new_generation_replaces_every_output_of_the_last(kind: str, tmp_path: Path) -> None:
    """An input's prefix holds exactly what its newest conversion wrote: errors of jobs
    that now convert go, and inputs whose names start the same are never touched."""
    src = MemoryStore("in")
    out: ObjectStore = MemoryStore("out") if kind == "memory" else LocalStore(tmp_path)
    pipeline = build_pipeline(Config(), src, out, open_bucket=False)
    bad_job = rect([{"x": "?", "y": 0}])

    def process(name: str, doc: Any) -> str:
        src.write(name, json.dumps(doc).encode(), "application/json", metadata={})
        return pipeline.process(SourceRef("in", name)).status

    # Neighbours whose names extend "single.json" and "batch.json".
    out.write("single.json2@/error.json", b"{}", "application/json")
    out.write("batch.json.json@/jobs/b/error.json", b"{}", "application/json")
    neighbours = ["batch.json.json@/jobs/b/error.json", "single.json2@/error.json"]
    assert process("single.json", bad_job) == "failed"
    assert process("batch.json", {"not": "a job"}) == "failed"
    assert out.list("batch.json@/") == ["batch.json@/error.json"]
    assert process("batch.json", [GOOD | {"reference_id": "a"},
                                  bad_job | {"reference_id": "b"},
                                  bad_job | {"reference_id": "c"}]) == "partial"
    assert [n for n in out.list("") if n.endswith("error.json")] == [
        "batch.json.json@/jobs/b/error.json", "batch.json@/jobs/b/error.json",
        "batch.json@/jobs/c/error.json", "single.json2@/error.json", "single.json@/error.json"]
    assert process("single.json", GOOD) == "converted"
    assert out.list("single.json@/") == ["single.json@/coco.json", "single.json@/report.json"]
    assert process("batch.json", [GOOD | {"reference_id": r} for r in "ab"]
                   + [bad_job | {"reference_id": "c"}]) == "partial"
    assert [n for n in out.list("batch.json@/") if n.endswith("error.json")] == [
        "batch.json@/jobs/c/error.json"]
    assert process("batch.json", [GOOD | {"reference_id": r} for r in "abc"]) == "converted"
    assert [n for n in out.list("") if n.endswith("error.json")] == neighbours
    report = json.loads(out.read("batch.json@/report.json"))
    assert sorted(report["outputs"]) == sorted(
        n for n in out.list("batch.json@/") if n != "batch.json@/report.json")
    load_coco(json.loads(out.read("single.json@/coco.json")))


@pytest.mark.parametrize(("name", "data", "declared", "code"), [
    ("big.json", json.dumps(GOOD | {"pad": "x" * 3000}).encode(), None, "object_too_large"),
    ("declared.json", json.dumps(GOOD).encode(), 10**9, "object_too_large"),
    ("json.json", json.dumps(GOOD | {"pad": "x" * 1500}).encode(), None, "json_too_large"),
    ("lines.jsonl", (json.dumps(GOOD) + "\n") * 4, None, "too_many_jobs"),
    ("batch.json", json.dumps([GOOD] * 4).encode(), None, "too_many_jobs"),
], ids=["object", "declared-size", "json", "jsonl-jobs", "array-jobs"])
def test_size_limits_are_poison_with_their_code(
    name: str, data: bytes | str, declared: int | None, code: str
) -> None:
    limits = replace(Limits(), max_object_bytes=2500, max_json_bytes=1200, max_batch_jobs=3)
    src, out = MemoryStore("in"), MemoryStore("out")
    body = data.encode() if isinstance(data, str) else data
    src.write(name, body, "application/json", metadata={})
    pipeline = build_pipeline(Config(limits=limits), src, out, open_bucket=False)
    outcome = pipeline.process(SourceRef("in", name, size=declared))
    assert outcome.status == "failed"
    assert [e["error"]["code"] for e in outcome.errors] == [code]
    assert out.list(f"{name}@/") == [f"{name}@/error.json"]
