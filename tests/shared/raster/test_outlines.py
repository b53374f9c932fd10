"""Exact outlines: pycocotools must rasterise each to exactly its region's pixels."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from shared.raster import outlines
from shared.raster.outlines import boundaries, outline_polygons
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


def _filled(region: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The region with its holes filled: all but the background reachable from outside
    (4-connected)."""
    height, width = region.shape
    framed = np.zeros((height + 2, width + 2), dtype=np.uint8)
    framed[1:-1, 1:-1] = region
    cv2.floodFill(framed, np.zeros((height + 4, width + 4), np.uint8), (0, 0), 2, flags=4)
    inside: npt.NDArray[np.bool_] = framed[1:-1, 1:-1] != 2
    return inside


@settings(max_examples=300)
@given(label_images(max_side=40), st.booleans(), st.sampled_from([1, 5, outlines._BATCH_RUNS]))
def test_boundaries_count_like_opencv_and_outline_exactly(
    image: Labels, reverse: bool, batch: int
) -> None:
    """Outer cycles are the 8-connected components and the others the 4-connected holes,
    as OpenCV counts them; the outer outlines rasterise to the region, holes filled.
    Whatever the batches of colours."""
    runs = row_runs(image)
    indices = np.arange(runs.colors.size)[:: -1 if reverse else 1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(outlines, "_BATCH_RUNS", batch)
        found = boundaries(runs, indices, image.shape[1])
    at = 0
    for i, outer, holes in zip(indices, found.outer, found.holes, strict=True):
        region = image == runs.colors[i]
        binary = region.astype(np.uint8)
        components = cv2.connectedComponents(binary, connectivity=8)[0] - 1
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        outer_borders = int((hierarchy[0][:, 3] < 0).sum())
        assert (outer, holes) == (components, len(contours) - outer_borders)
        polygons = found.polygons[at : at + outer]
        at += outer
        rles = mask_utils.frPyObjects(polygons, *image.shape)
        drawn = np.asarray(mask_utils.decode(mask_utils.merge(rles)), dtype=bool)
        assert np.array_equal(drawn, _filled(region))
        if holes == 0:  # and each component's outline is exactly that component
            for polygon in polygons:
                assert np.array_equal(_drawn(polygon, *image.shape) & ~region, np.zeros_like(region))
    assert at == len(found.polygons)


def test_boundaries_join_diagonal_pixels_and_keep_only_corners() -> None:
    image = np.zeros((4, 6), dtype=np.uint32)
    image[1, 1] = image[2, 2] = 1  # two pixels touching at a corner: one component
    image[1:3, 4:6] = 1  # and a square apart
    runs = row_runs(image)
    found = boundaries(runs, np.array([1]), 6)
    assert (found.outer.tolist(), found.holes.tolist()) == ([2], [0])
    assert sorted(found.polygons, key=len) == [
        [4, 1, 6, 1, 6, 3, 4, 3],  # the square: its four corners, clockwise on screen
        [1, 1, 2, 1, 2, 2, 3, 2, 3, 3, 2, 3, 2, 2, 1, 2],  # through the shared corner
    ]


def test_outlines_keep_only_corners() -> None:
    square = np.zeros((6, 6), dtype=np.uint32)
    square[1:4, 2:5] = 1
    runs = row_runs(square)
    assert outline_polygons(runs, np.array([1])) == [[2, 1, 2, 4, 5, 4, 5, 1]]
