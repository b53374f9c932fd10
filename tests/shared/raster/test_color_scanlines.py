"""Colour PNG scanlines set from row runs in batches, against packbits of the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shared.gtstudio.legend import LegendEntry
from shared.raster import regions
from shared.raster.regions import _Present, color_scanlines
from shared.raster.runs import region_summary, row_runs


def _present(packed: np.ndarray) -> list[_Present]:
    runs = row_runs(packed)
    summary = region_summary(runs)
    out = []
    for i, color in enumerate(runs.colors.tolist()):
        box = (int(summary.x0[i]), int(summary.y0[i]), int(summary.x1[i]), int(summary.y1[i]))
        entry = LegendEntry(rgb=color, label="x", instance=None)
        out.append(_Present(entry, i, box, int(summary.pixels[i]), {}))
    return out


def _reference(packed: np.ndarray, present: _Present) -> np.ndarray:
    x0, y0, x1, y1 = present.box
    bits = np.packbits(packed[y0:y1] == present.entry.rgb, axis=1)
    return np.hstack([np.zeros((y1 - y0, 1), np.uint8), bits]).ravel()


def _check(packed: np.ndarray) -> None:
    runs = row_runs(packed)
    present = _present(packed)
    seen = 0
    for p, rows, y0 in color_scanlines(runs, present, packed.shape[1]):
        assert y0 == p.box[1]
        np.testing.assert_array_equal(rows, _reference(packed, p))
        seen += 1
    assert seen == len(present)


@settings(max_examples=150)
@given(arrays(np.uint32, st.tuples(st.integers(1, 40), st.integers(1, 70)),
              elements=st.sampled_from([1, 2, 3, 0xFFFFFF])))
def test_scanlines_are_the_packed_pixels_of_each_colour(packed: np.ndarray) -> None:
    _check(np.ascontiguousarray(packed))  # runs of one colour share bytes, widths not x8


@pytest.mark.parametrize("batch", [1, 64, 1 << 20])
def test_batches_of_any_size_give_the_same_rows(
    batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(regions, "_SCANLINE_BATCH", batch)  # a colour per batch, or all
    monkeypatch.setattr(regions, "_RUN_CHUNK", max(1, batch // 64))  # runs split up
    rng = np.random.default_rng(5)
    packed = rng.integers(0, 30, size=(90, 131)).astype(np.uint32)
    packed[20:60, 10:120] = 7  # one colour's box far taller than a small batch
    _check(packed)
