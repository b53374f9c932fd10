"""Polygon areas: bounded work whatever an export declares, and the same pixels either way."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from shared.coco.builder import polygon_area
from shared.config import Limits
from shared.errors import TooLargeError

W, H = 300, 200
points = st.tuples(st.floats(0, W, allow_nan=False), st.floats(0, H, allow_nan=False))


def reference_area(flat: list[float], width: int, height: int) -> float:
    """pycocotools on the whole frame, as the guide does it."""
    rles = mask_utils.frPyObjects([flat], height, width)
    return float(mask_utils.area(mask_utils.merge(rles)))


@settings(max_examples=300, deadline=None)
@given(st.lists(points, min_size=3, max_size=12))
def test_area_in_the_bounding_box_is_the_frame_area_up_to_a_pixel_a_vertex(
    ring: list[tuple[float, float]]
) -> None:
    flat = [c for p in ring for c in p]
    frame_w, frame_h = W + 100, H + 100  # over the limit below; every box is within it
    reference = reference_area(flat, frame_w, frame_h)
    assert polygon_area(flat, frame_w, frame_h, Limits(), "") == reference  # exact
    boxed = polygon_area(flat, frame_w, frame_h, Limits(), "", frame_limit=(W + 1) * (H + 1))
    assert abs(boxed - reference) <= len(ring)


def test_a_small_polygon_on_a_huge_declared_frame_converts() -> None:
    flat = [10.0, 10.0, 60.0, 10.0, 60.0, 40.0, 10.0, 40.0]
    moved = [c + 400_000 for c in flat]  # whole pixels: the shift back is exact
    assert polygon_area(moved, 10**6, 10**6, Limits(), "") == reference_area(flat, W, H)


def zigzag(n: int, size: int) -> list[float]:
    return [c for i in range(n) for c in ((i * size / n), 0.0 if i % 2 else float(size - 1))]


def test_a_zigzag_on_a_huge_frame_is_refused_before_rasterising() -> None:
    with pytest.raises(TooLargeError) as info:
        polygon_area(zigzag(3000, 10**6), 10**6, 10**6, Limits(), "/p")
    assert info.value.code == "shape_too_complex"
    assert info.value.pointer == "/p/points"
    wide = replace(Limits(), max_raster_work=10**12)
    with pytest.raises(TooLargeError) as big:
        polygon_area(zigzag(4, 10**6), 10**6, 10**6, wide, "/p")
    assert big.value.code == "shape_too_large"


def test_the_attack_export_fails_cleanly_in_a_fresh_process(tmp_path: Path) -> None:
    """The export the issue measured (huge declared size, one zig-zag of 3000 points) used to
    kill the worker inside pycocotools: now it is an error entry and exit code 1."""
    ring = [{"x": i / 3000, "y": 0.0 if i % 2 else 1.0} for i in range(3000)]
    doc = {"image_url": "https://x.example/a.jpg", "width": 10**6, "height": 10**6,
           "maker_response": {"polygons": {"data": [
               {"_id": "z", "label": "zig", "points": {str(i): p for i, p in enumerate(ring)}}]}}}
    src = tmp_path / "zig.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "shared.app.cli", "convert", str(src), "--out",
                             str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    error = json.loads((out / "zig.json@" / "error.json").read_text())
    assert error["error"]["code"] == "shape_too_complex"


# -- every annotation a segmentation, a box with an area, attributes readers accept ---------

from shared.coco.builder import (  # noqa: E402
    RESERVED_ATTRIBUTE_NAMES,
    ImageSize,
    at_least_a_pixel,
    convert_vector_job,
    split_attributes,
)
from shared.config import Options  # noqa: E402
from shared.geometry import round_coord  # noqa: E402
from shared.gtstudio.jobs import parse_job  # noqa: E402

extents = st.floats(0, 50, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 99, allow_nan=False), st.floats(0, 99, allow_nan=False), extents, extents,
       st.integers(1, 100), st.integers(1, 100))
def test_a_padded_box_has_a_pixel_each_way_inside_the_image(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> None:
    # The builder pads boxes it has already rounded and clipped.
    x, y = round_coord(min(x, width)), round_coord(min(y, height))
    w, h = round_coord(min(w, width - x)), round_coord(min(h, height - y))
    px, py, pw, ph = at_least_a_pixel([x, y, w, h], width, height)
    assert pw >= min(1, width) and ph >= min(1, height)
    assert px >= 0 and py >= 0 and px + pw <= width + 1e-9 and py + ph <= height + 1e-9
    if w >= 1:
        assert (px, pw) == (x, w)  # a real extent is kept as it is
    else:  # the pixel covers the original extent's centre
        assert px <= x + w / 2 + 1e-9 and x + w / 2 <= px + pw + 1e-9


@given(st.dictionaries(st.sampled_from([*RESERVED_ATTRIBUTE_NAMES, "_x", "make", "pose", "a b"]),
                       st.integers()))
def test_attributes_keep_every_name_and_value_and_no_reserved_name(attrs: dict[str, int]) -> None:
    out = split_attributes(attrs)
    assert {**out["attributes"], **out.get("reserved_attributes", {})} == attrs
    assert not set(out["attributes"]) & RESERVED_ATTRIBUTE_NAMES
    assert all(not k.startswith("_") for k in out["attributes"])
    # Spread the way FiftyOne's COCO importer spreads it: no annotation field is replaced.
    ann = {"id": 1, "bbox": [0, 0, 1, 1], **out}
    spread = {**ann, **ann.pop("attributes")}
    assert spread["id"] == 1 and spread["bbox"] == [0, 0, 1, 1]


@pytest.mark.parametrize("points", [
    [(0.5, 0.5)],  # one point
    [(0.2, 0.5), (0.4, 0.5), (0.6, 0.5)],  # collinear, horizontal
    [(0.3, 0.1), (0.3, 0.9)],  # collinear, vertical
    [(1.0, 1.0)],  # on the far corner
])
def test_one_point_and_collinear_landmarks_get_a_box_with_an_area(
    points: list[tuple[float, float]]
) -> None:
    job = parse_job({"width": 100, "height": 80, "maker_response": {"landmarks": {"data": [{
        "_id": "lm", "label": "face",
        "points": {f"p{i}": {"x": x, "y": y, "label": i + 1} for i, (x, y) in enumerate(points)},
    }]}}}, "", Limits())
    coco = convert_vector_job(job, ImageSize(100, 80, "export"), {"face": 1}, Options(), "k").finish().coco
    (ann,) = coco["annotations"]
    x, y, w, h = ann["bbox"]
    assert w >= 1 and h >= 1 and ann["area"] == w * h > 0
    assert x + w <= 100 and y + h <= 80
    assert ann["segmentation"] == [[x, y, x + w, y, x + w, y + h, x, y + h]] and ann["box_only"]
    assert isinstance(coco["info"]["year"], int)
