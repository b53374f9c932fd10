"""Exact outlines: pycocotools must rasterise each to exactly its region's pixels."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from shared.raster.outlines import outline_polygons, traced_outlines
from shared.raster.runs import region_summary, row_runs
from tests.shared.raster.test_runs import Labels, label_images


def _drawn(polygon: list[int], height: int, width: int) -> npt.NDArray[np.bool_]:
    assert len(polygon) >= 8 and len(polygon) % 2 == 0
    rle = mask_utils.frPyObjects([polygon], height, width)
    return np.asarray(mask_utils.decode(rle)[:, :, 0], dtype=bool)


@given(label_images(max_side=40))
def test_row_convex_outlines_are_exact(image: Labels) -> None:
    runs = row_runs(image)
    regions = region_summary(runs)
    convex = np.flatnonzero(regions.row_convex)
    for i, polygon in zip(convex, outline_polygons(runs, convex), strict=True):
        assert np.array_equal(_drawn(polygon, *image.shape), image == runs.colors[i])


@st.composite
def components(draw: st.DrawFn) -> npt.NDArray[np.uint8]:
    """One 8-connected component of random noise: spurs, pinches, lone pixels."""
    height, width = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    noise = draw(arrays(np.uint8, (height, width), elements=st.integers(0, 1)))
    count, labels = cv2.connectedComponents(noise, connectivity=8)
    if count < 2:
        noise[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = 1
        count, labels = cv2.connectedComponents(noise, connectivity=8)
    part: npt.NDArray[np.uint8] = (labels == draw(st.integers(1, count - 1))).astype(np.uint8)
    return part


@given(st.lists(components(), min_size=1, max_size=6), st.integers(0, 5), st.integers(0, 5))
def test_traced_outlines_of_components_without_holes_are_exact(
        parts: list[npt.NDArray[np.uint8]], x0: int, y0: int) -> None:
    borders, kept = [], []
    for part in parts:
        contours, hierarchy = cv2.findContours(part, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        if len(contours) == 1:  # holes are RLE's job
            borders.append((contours[0], x0, y0))
            kept.append(part)
    for part, polygon in zip(kept, traced_outlines(borders), strict=True):
        height, width = part.shape
        placed = np.zeros((height + y0, width + x0), dtype=bool)
        placed[y0:, x0:] = part.astype(bool)
        assert np.array_equal(_drawn(polygon, height + y0, width + x0), placed)


def test_outlines_keep_only_corners() -> None:
    square = np.zeros((6, 6), dtype=np.uint32)
    square[1:4, 2:5] = 1
    runs = row_runs(square)
    assert outline_polygons(runs, np.array([1])) == [[2, 1, 2, 4, 5, 4, 5, 1]]
    contours, _ = cv2.findContours((square == 1).astype(np.uint8), cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_NONE)
    [traced] = traced_outlines([(contours[0], 0, 0)])
    assert sorted(zip(traced[::2], traced[1::2], strict=True)) == [(2, 1), (2, 4), (5, 1), (5, 4)]
