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
