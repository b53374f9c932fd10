"""Run-length scans checked against plain numpy and pycocotools on generated label images."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from shared.raster.runs import (
    column_runs,
    euler_numbers,
    region_summary,
    rle_strings,
    row_bands,
    row_runs,
)

Labels = npt.NDArray[np.uint32]


def painted(image: Labels) -> Labels:
    """The image redrawn from its runs in raster order."""
    runs = row_runs(image)
    raster = runs.raster
    assert (np.diff(raster.row * image.shape[1] + raster.x0) > 0).all()
    return np.repeat(runs.colors[runs.index], raster.x1 - raster.x0).reshape(image.shape)


@st.composite
def label_images(draw: st.DrawFn, max_side: int = 24) -> Labels:
    """Noise, blocks or stripes of a few labels: runs of every length, touching corners."""
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    labels = draw(st.integers(1, 5))
    small = draw(arrays(np.uint32, (height, width), elements=st.integers(0, labels - 1)))
    block = draw(st.integers(1, 4))
    image = np.kron(small, np.ones((block, block), dtype=np.uint32))[:height, :width]
    return np.ascontiguousarray(image)


@given(label_images())
def test_row_runs_tile_the_image_and_give_each_colours_box(image: Labels) -> None:
    runs = row_runs(image)
    regions = region_summary(runs)
    assert np.array_equal(runs.colors, np.unique(image))
    assert np.array_equal(painted(image), image)
    for i, color in enumerate(runs.colors):
        ys, xs = np.nonzero(image == color)
        assert (regions.x0[i], regions.y0[i], regions.x1[i], regions.y1[i]) == (
            xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert regions.pixels[i] == ys.size


@given(label_images())
def test_euler_number_and_row_convexity_agree_with_opencv(image: Labels) -> None:
    runs = row_runs(image)
    regions = region_summary(runs)
    euler = euler_numbers(runs, np.arange(runs.colors.size), image.shape[1])
    assert euler_numbers(runs, np.arange(runs.colors.size)[::-1], image.shape[1]).tolist() == (
        euler[::-1].tolist())
    for i, color in enumerate(runs.colors):
        binary = (image == color).astype(np.uint8)
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        outers = int((hierarchy[0][:, 3] < 0).sum())
        holes = len(contours) - outers
        assert euler[i] == outers - holes
        if regions.row_convex[i]:
            assert (outers, holes) == (1, 0)


def _coco_counts(binary: npt.NDArray[np.bool_]) -> str:
    counts = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))["counts"]
    assert isinstance(counts, bytes)
    return counts.decode("ascii")


@given(label_images())
def test_rle_strings_equal_pycocotools_encode(image: Labels) -> None:
    start, values = column_runs(image)
    wanted = np.unique(image)
    got = rle_strings(start, values, wanted, image.size)
    assert got == [_coco_counts(image == w) for w in wanted]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 3000),
       st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(1, 400)), max_size=6))
def test_rle_strings_hold_large_counts(height: int, width: int,
                                       blobs: list[tuple[float, float, int]]) -> None:
    """Counts and their deltas of millions need several characters each, signed."""
    image = np.zeros((height, width), dtype=np.uint32)
    for n, (fy, fx, size) in enumerate(blobs, start=1):
        y, x = int(fy * (height - 1)), int(fx * (width - 1))
        image[y : y + size, x : x + size // 3 + 1] = n % 3
    start, values = column_runs(image)
    wanted = np.unique(image)
    assert rle_strings(start, values, wanted, image.size) == [
        _coco_counts(image == w) for w in wanted]


def test_rle_strings_of_an_absent_colour_is_all_background() -> None:
    image = np.zeros((3, 4), dtype=np.uint32)
    start, values = column_runs(image)
    got = rle_strings(start, values, np.array([0, 7], dtype=np.uint32), image.size)
    assert got == [_coco_counts(image == 0), _coco_counts(image == 7)]


def test_scans_in_several_bands_match_one_pass() -> None:
    """Masks wider than a band's pixel budget are scanned a few rows at a time; runs
    and RLEs must not notice the seams."""
    width = (1 << 22) // 3 + 5  # bands of 2 rows
    small = np.random.default_rng(4).integers(0, 4, (4, width // 512 + 1)).astype(np.uint32)
    image = np.ascontiguousarray(np.kron(small, np.ones((3, 512), np.uint32))[:10, :width])
    assert len(row_bands(*image.shape)) == 5
    assert np.array_equal(painted(image), image)
    start, values = column_runs(image)
    wanted = np.unique(image)
    assert rle_strings(start, values, wanted, image.size) == [
        _coco_counts(image == w) for w in wanted]
