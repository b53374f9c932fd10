from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import Limits
from shared.errors import ConversionError
from shared.gtstudio.batches import split_jobs
from shared.gtstudio.jobs import parse_job
from shared.gtstudio.legend import is_bare_legend
from shared.gtstudio.records import Job
from shared.gtstudio.shapes import parse_shape

GOLDEN = Path(__file__).parents[2] / "data" / "golden" / "inputs"
RECT = {"_id": "r", "label": "car", "coordinates": [{"x": 0.1, "y": 0.1}, {"x": 0.2, "y": 0.3}]}


def _jobs(doc: Any) -> list[Job]:
    return [parse_job(item, ptr, Limits()) for ptr, item in split_jobs(doc, Limits())]


@pytest.mark.parametrize(
    ("doc", "reference_id", "kinds"),
    [
        pytest.param({"image_url": "u", "maker_response": {"rectangles": {"data": [RECT]}}},
                     None, ["rectangle"], id="job-build"),
        pytest.param({"build": {"image_url": "u", "maker_response": {"rectangles": {"data": [RECT]}}},
                      "meta": {"reference_id": "m-1"}}, "m-1", ["rectangle"], id="envelope"),
        pytest.param({"image_url": "u", "reference_id": "s-1",
                      "maker_response": {"rectangles": {"data": [RECT]}}}, "s-1", ["rectangle"],
                     id="build-with-sibling-reference"),
        pytest.param({"annotations": {"rectangles": [RECT], "polygons": []}, "image_url": "u"},
                     None, ["rectangle"], id="gt-json-export"),
        pytest.param({"data": {"annotations": {"rectangles": [RECT]}, "image_url": "u"},
                      "reference_id": "api-1"}, "api-1", ["rectangle"], id="api-result"),
        pytest.param({"export_data": [{"type": "JSON", "key": "data", "data": {
            "annotations": {"rectangles": [RECT]}, "image_url": "u"}}]}, None, ["rectangle"],
            id="submission-export-data"),
        pytest.param({"annotations": [{"type": "rectangle", **RECT}]}, None, ["rectangle"],
                     id="typed-list"),
    ],
)
def test_every_documented_shape_is_recognised(doc: Any, reference_id: str | None, kinds: list[str]) -> None:
    (job,) = _jobs(doc)
    assert job.reference_id == reference_id
    assert [s.kind for s in job.shapes] == kinds


def test_flat_raster_and_segmentation_build_are_recognised() -> None:
    flat = parse_job({"url": "gs://b/m.png", "legend": {"#000001": "car"}}, "", Limits())
    assert flat.raster is not None and flat.raster.url == "gs://b/m.png"
    build = parse_job({"image_url": "u", "maker_response": {"raster": {"data": {
        "url": "m.png", "legend": {"#000001": "car"}, "instances": []}}}}, "", Limits())
    assert build.raster is not None and build.raster.pointer == "/maker_response/raster/data"


@pytest.mark.parametrize("value", [None, [], {}, {"data": None}, {"data": []}])
def test_missing_null_or_empty_type_lists_are_fine(value: Any) -> None:
    job = parse_job({"image_url": "u", "maker_response": {"polygons": value}}, "", Limits())
    assert job.shapes == ()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"a": {"value": "1", "state": "editable"}}, {"a": "1"}),
        ({"a": "bare", "b": {"value": ["x", "y"]}}, {"a": "bare", "b": ["x", "y"]}),
        ([{"name": "a", "value": True}], {"a": True}),
        ([], {}),
        (None, {}),
    ],
)
def test_attribute_variants(raw: Any, expected: dict[str, Any]) -> None:
    shape = parse_shape("rectangle", {**RECT, "attributes": raw}, "", Limits())
    assert shape.attributes == expected


def test_id_and_underscore_id_are_both_kept() -> None:
    assert parse_shape("rectangle", {**RECT, "_id": "a"}, "", Limits()).gt_id == "a"
    no_underscore = {k: v for k, v in RECT.items() if k != "_id"}
    assert parse_shape("rectangle", {**no_underscore, "id": 7}, "", Limits()).gt_id == "7"


def test_unknown_keys_are_ignored_and_unknown_types_kept_for_extras() -> None:
    job = parse_job({"image_url": "u", "surprise": {"deep": [1, 2]}, "maker_response": {
        "rectangles": {"data": [{**RECT, "new_field": 1}]},
        "ellipses": {"data": [{"label": "e"}]}, "settings": {"x": 1}}}, "", Limits())
    assert [s.kind for s in job.shapes] == ["rectangle"]
    assert [u.type_name for u in job.unsupported] == ["ellipses"]
    assert [n.reason for n in job.notes] == ["unsupported_type"]


def test_bare_legend_detection() -> None:
    assert is_bare_legend({"#00ff00": "car # 1", "rgb(1, 2, 3)": "road"})
    assert is_bare_legend({"legend": {"#00ff00": "car"}, "instances": []})
    assert not is_bare_legend({"image_url": "x", "maker_response": {}})
    assert not is_bare_legend({"url": "m.png", "legend": {}})


# Golden inputs that are meant to be refused, and why.
REFUSED = {"sensor_fusion_camera_lidar.json": "unsupported_job_type"}


def test_golden_inputs_all_parse() -> None:
    parsed = 0
    for path in sorted(GOLDEN.iterdir()):
        # A JSON beside a PNG of the same name is a raster pair's legend, not a job.
        if path.suffix == ".json" and not path.with_suffix(".png").exists():
            doc = json.loads(path.read_text())
            if path.name in REFUSED:
                with pytest.raises(ConversionError) as info:
                    _jobs(doc)
                assert info.value.code == REFUSED[path.name]
                continue
            assert _jobs(doc), path
            parsed += 1
    assert parsed >= 8


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["x", "y", "data", "label", "points", "edges", "_id",
                                       "coordinates", "attributes", "maker_response",
                                       "rectangles", "polygons", "lines", "landmarks",
                                       "cuboids", "annotations", "build", "meta", "raster",
                                       "url", "legend", "width", "height", "p1", "e1"]),
                      children, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_parser_never_crashes_on_arbitrary_json(doc: Any) -> None:
    """Any JSON either parses or raises ConversionError with a pointer: never anything else."""
    try:
        for ptr, item in split_jobs(doc, Limits()):
            parse_job(item, ptr, Limits())
    except ConversionError as exc:  # any input: raising is one allowed outcome
        assert exc.code and isinstance(exc.pointer, str)


SENSOR_FUSION = {"sensor_fusion_v2": {"data": {
    "tracks": [{"_id": "k1", "label": "car"}, {"_id": "k2", "label": "bus"}],
    "annotations": [{"_id": "a1", "type": "cuboid_3d", "label": "car"}]}}}


def test_a_job_of_another_base_type_is_an_error_naming_it() -> None:
    with pytest.raises(ConversionError) as info:
        _jobs({"image_url": "u", "maker_response": SENSOR_FUSION})
    assert info.value.code == "unsupported_job_type"
    assert "sensor_fusion_v2 (1 annotations, 2 tracks)" in info.value.message
    assert info.value.pointer == "/maker_response/sensor_fusion_v2/data"


def test_another_base_type_beside_convertible_shapes_is_noted_not_dropped() -> None:
    rect = {"label": "car", "coordinates": [{"x": 0, "y": 0}, {"x": .5, "y": .5}]}
    (job,) = _jobs({"image_url": "u", "maker_response": SENSOR_FUSION | {
        "rectangles": {"data": [rect]}}})
    assert len(job.shapes) == 1
    assert [u.type_name for u in job.unsupported] == ["sensor_fusion_v2"]
    assert [(n.reason, n.pointer) for n in job.notes] == [
        ("unsupported_job_type", "/maker_response/sensor_fusion_v2/data")]


def test_real_export_keys_are_kept_ignored_or_counted() -> None:
    item = {"label": "car", "_id": "r1", "coordinates": [{"x": 0, "y": 0}, {"x": 1, "y": 1}],
            "color": "rgb(12, 34, 56)", "label_id": 7, "keyFrame": True, "comments": [],
            "labelEditable": True, "shapeEditable": False, "annotationQcEvals": [],
            "annotationQCEvaluations": {}, "state": "editable", "mystery": 1, "zeta": None}
    shape = parse_shape("rectangle", item, "/r", Limits())
    assert shape.extra == {"gt_color": [12, 34, 56], "gt_label_id": "7", "key_frame": True}
    assert shape.unknown_keys == ("mystery", "zeta")


@pytest.mark.parametrize(("value", "expected"), [
    ("rgb(1, 2, 3)", [1, 2, 3]), ("rgba(1,2,3,0.5)", [1, 2, 3]), ("#0a0B0c", [10, 11, 12]),
    ("0a0b0c", [10, 11, 12]), ("rgb(300, 0, 0)", "rgb(300, 0, 0)"), ("red", "red"),
])
def test_colours_become_rgb_triples_when_they_can(value: str, expected: Any) -> None:
    from shared.gtstudio.shapes import kept_value

    assert kept_value("color", value) == expected


def test_tracker_keys_reach_every_frame_and_unknown_ones_are_counted_once() -> None:
    box = [{"x": 0, "y": 0}, {"x": .5, "y": .5}]
    doc = {"width": 10, "height": 10,
           "video_data": {"frames": [{"frame_id": "a", "src": "u"}, {"frame_id": "b", "src": "v"}]},
           "maker_response": {"video2d": {"data": {"groups": None, "annotations": [{
               "_id": "t", "type": "rectangle", "label": "car", "color": "rgb(9, 8, 7)",
               "label_id": "L", "source": "images", "grouping_config": {}, "odd": 1,
               "frames": {"a": {"coordinates": box, "keyFrame": True},
                          "b": {"coordinates": box, "keyFrame": False, "odd_frame": 2}}}]}}}}
    (job,) = _jobs(doc)
    assert [s.extra for s in job.shapes] == [
        {"gt_color": [9, 8, 7], "gt_label_id": "L", "key_frame": True},
        {"gt_color": [9, 8, 7], "gt_label_id": "L", "key_frame": False}]
    assert [s.unknown_keys for s in job.shapes] == [("odd",), ("odd_frame",)]


def test_a_coco_file_is_recognised_and_refused_with_what_to_do() -> None:
    from shared.config import Limits
    from shared.errors import ConversionError
    from shared.gtstudio.jobs import parse_job

    annotation: dict[str, Any] = {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1],
                                  "area": 1, "iscrowd": 0, "segmentation": []}
    coco: dict[str, Any] = {"info": {}, "licenses": [], "annotations": [annotation],
                            "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
                            "categories": [{"id": 3, "name": "car"}]}
    with pytest.raises(ConversionError) as caught:
        parse_job(coco, "", Limits())
    assert caught.value.code == "already_coco" and "gtcoco assemble" in caught.value.message
    # The guide's COCO-like file (labels as category_id) is still upgraded.
    guide = {**coco, "annotations": [{**annotation, "category_id": "car"}]}
    assert parse_job(guide, "", Limits()).shapes
