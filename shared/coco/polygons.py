"""Every polygon of a job to pixels at once: scale, clip, round, ring clean-up, boxes and
pycocotools areas on arrays, the same numbers as the per-shape path in `builder.py`.

Pure: no IO.  The per-shape path stays the reference (frames too large for pycocotools go
through it, and the tests compare the two on generated polygons).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from pycocotools import mask as mask_utils

from shared.config import Limits
from shared.errors import TooLargeError, pointer_join
from shared.geometry import round_coords

# pycocotools' area() keeps the count of RLEs in 8 bits: more per call overflows.
AREA_BATCH = 255


class PixelPolygon(NamedTuple):
    """One polygon in pixels, or why it was dropped (`reason`), or the error it raises."""

    clipped: int
    flat: list[float] | None = None
    area: float = 0.0
    bbox: list[float] | None = None
    reason: str | None = None  # too_few_points | zero_area
    detail: str = ""
    error: TooLargeError | None = None


class PixelPolygons(NamedTuple):
    """Every polygon's outcome by column (thousands a job: no object each).  Polygon `i`
    is kept with `flat[i]`, `area[i]`, `bbox[i]` unless `failed` holds why not."""

    clipped: list[int]
    flat: list[list[float]]
    area: list[float]
    bbox: list[list[float]]
    failed: dict[int, PixelPolygon]

    def outcome(self, i: int) -> PixelPolygon:
        """Polygon `i` as one record."""
        found = self.failed.get(i)
        if found is not None:
            return found
        return PixelPolygon(self.clipped[i], self.flat[i], self.area[i], self.bbox[i])


def pixel_polygons(
    coords: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    limits: Limits,
    pointers: Sequence[str],
) -> PixelPolygons:
    """`coords[i]` (normalised, drawing order) on a `sizes[i]` = (width, height) image."""
    count = len(coords)
    lengths = np.fromiter(map(len, coords), dtype=np.int64, count=count)
    if not lengths.any():
        few = PixelPolygon(0, reason="too_few_points", detail="0 distinct point(s) after clipping")
        return PixelPolygons([0] * count, [], [], [], dict.fromkeys(range(count), few))
    points = np.concatenate(coords)
    owner = np.repeat(np.arange(count), lengths)
    frame = np.array(sizes, dtype=np.float64).reshape(-1, 2)
    width, height = frame[owner, 0], frame[owner, 1]
    x, y = points[:, 0] * width, points[:, 1] * height
    outside = ~((x >= 0.0) & (x <= width) & (y >= 0.0) & (y <= height))
    clipped = np.bincount(owner, weights=outside, minlength=count).astype(np.int64)
    x = round_coords(np.minimum(np.maximum(x, 0.0), width))
    y = round_coords(np.minimum(np.maximum(y, 0.0), height))
    # The ring: consecutive repeats dropped, then a last point equal to the first.
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    present = lengths > 0
    keep = np.zeros(points.shape[0], dtype=bool)
    keep[starts[present]] = True
    keep[1:] |= (x[1:] != x[:-1]) | (y[1:] != y[:-1])
    index = np.arange(points.shape[0])
    last = np.full(count, -1, dtype=np.int64)
    # The last kept point of each polygon (its first is always kept).
    last[present] = np.maximum.reduceat(np.where(keep, index, -1), starts[present])
    kept_count = np.bincount(owner[keep], minlength=count)
    closing = (kept_count > 1) & (last >= 0)
    head = np.minimum(starts, points.shape[0] - 1)
    tail = np.maximum(last, 0)
    closing &= (x[tail] == x[head]) & (y[tail] == y[head])
    keep[last[closing]] = False
    ring = np.flatnonzero(keep)
    ring_owner = owner[ring]
    rx, ry = x[ring], y[ring]
    ring_lengths = np.bincount(ring_owner, minlength=count)
    ring_starts = np.concatenate(([0], np.cumsum(ring_lengths)[:-1]))
    filled = ring_lengths > 0
    # At least 3 distinct points: past its first two (consecutive, so distinct), some
    # point of the ring is neither.
    first = ring_starts[filled]
    second = np.minimum(first + 1, ring.size - 1)
    other = np.ones(ring.size, dtype=bool)
    for end in (first, second):
        other &= (rx != np.repeat(rx[end], ring_lengths[filled])) | (
            ry != np.repeat(ry[end], ring_lengths[filled])
        )
    enough = (np.bincount(ring_owner, weights=other, minlength=count) > 0) & (ring_lengths >= 3)
    # pycocotools walks every edge pixel by pixel: the walk of each ring, from its last point.
    previous = np.arange(ring.size) - 1
    previous[ring_starts[filled]] = ring_starts[filled] + ring_lengths[filled] - 1
    step = np.maximum(np.abs(rx - rx[previous]), np.abs(ry - ry[previous])) if ring.size else rx
    steps = np.bincount(ring_owner, weights=step, minlength=count)
    ring_flat = np.stack([rx, ry], axis=1).ravel()  # what pycocotools reads: views, no copy
    flat_all = ring_flat.tolist()
    boxes = np.zeros((count, 4))
    if filled.any():
        lo_x, lo_y = np.minimum.reduceat(rx, first), np.minimum.reduceat(ry, first)
        boxes[filled] = np.stack(
            [
                lo_x,
                lo_y,
                np.maximum.reduceat(rx, first) - lo_x,
                np.maximum.reduceat(ry, first) - lo_y,
            ],
            axis=1,
        )
    box_list = round_coords(boxes).tolist()
    clipped_list = clipped.tolist()
    begins, ends = (2 * ring_starts).tolist(), (2 * (ring_starts + ring_lengths)).tolist()
    flats = [flat_all[b:e] for b, e in zip(begins, ends, strict=True)]
    failed: dict[int, PixelPolygon] = {}
    for i in np.flatnonzero(~enough).tolist():
        distinct = len(set(zip(flats[i][::2], flats[i][1::2], strict=True)))
        failed[i] = PixelPolygon(
            clipped_list[i],
            reason="too_few_points",
            detail=f"{distinct} distinct point(s) after clipping",
        )
    limit = limits.max_raster_work
    near = np.abs(steps - limit) <= 1e-6 * max(limit, 1)
    for i in np.flatnonzero(enough & ((steps > limit) | near)).tolist():
        walk = ring_walk(flats[i])  # summed as the per-shape path sums it (and says it)
        if walk > limit:
            failed[i] = PixelPolygon(
                clipped_list[i],
                error=TooLargeError(
                    "shape_too_complex",
                    f"the outline walks {walk:.0f} pixels, limit {limit} (GTCOCO_MAX_RASTER_WORK)",
                    pointer_join(pointers[i], "points"),
                ),
            )
    areas = [0.0] * count
    rings: dict[tuple[int, int], list[int]] = {}
    for i, frame_size in enumerate(sizes):
        if i not in failed:
            rings.setdefault(frame_size, []).append(i)
    for (w, h), members in rings.items():
        for chunk in range(0, len(members), AREA_BATCH):
            part = members[chunk : chunk + AREA_BATCH]
            found = mask_utils.area(
                mask_utils.frPyObjects([ring_flat[begins[i] : ends[i]] for i in part], h, w)
            )
            for i, area in zip(part, found.tolist(), strict=True):
                if area <= 0:
                    failed[i] = PixelPolygon(
                        clipped_list[i], reason="zero_area", detail="the polygon covers no pixel"
                    )
                else:
                    areas[i] = float(area)
    return PixelPolygons(clipped_list, flats, areas, box_list, failed)


def ring_walk(flat: Sequence[float]) -> float:
    """The pixels pycocotools steps through along a ring (its edges at 5x, summed)."""
    ring = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    return float(np.abs(ring - np.roll(ring, 1, axis=0)).max(axis=1).sum())
