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


def pixel_polygons(
    coords: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    limits: Limits,
    pointers: Sequence[str],
) -> list[PixelPolygon]:
    """`coords[i]` (normalised, drawing order) on a `sizes[i]` = (width, height) image."""
    count = len(coords)
    if not count:
        return []
    lengths = np.fromiter(map(len, coords), dtype=np.int64, count=count)
    if not lengths.any():
        return [
            PixelPolygon(0, reason="too_few_points", detail="0 distinct point(s) after clipping")
            for _ in range(count)
        ]
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
    first_of = np.zeros(points.shape[0], dtype=bool)
    first_of[starts[lengths > 0]] = True
    keep = first_of.copy()
    keep[1:] |= (x[1:] != x[:-1]) | (y[1:] != y[:-1])
    index = np.arange(points.shape[0])
    last = np.full(count, -1, dtype=np.int64)
    present = lengths > 0
    if present.any():  # the last kept point of each polygon (its first is always kept)
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
    # Distinct points of each ring.
    by_value = np.lexsort((ry, rx, ring_owner))
    sx, sy, so = rx[by_value], ry[by_value], ring_owner[by_value]
    new = np.ones(by_value.size, dtype=bool)
    new[1:] = (so[1:] != so[:-1]) | (sx[1:] != sx[:-1]) | (sy[1:] != sy[:-1])
    distinct = np.bincount(so[new], minlength=count)
    # pycocotools walks every edge pixel by pixel: the walk of each ring, from its last point.
    previous = np.arange(ring.size) - 1
    has = ring_lengths > 0
    previous[ring_starts[has]] = ring_starts[has] + ring_lengths[has] - 1
    step = np.maximum(np.abs(rx - rx[previous]), np.abs(ry - ry[previous])) if ring.size else rx
    steps = np.bincount(ring_owner, weights=step, minlength=count)
    ring_xy = np.stack([rx, ry], axis=1)
    flat_all = ring_xy.ravel().tolist()
    boxes = np.zeros((count, 4))
    filled = ring_lengths > 0
    if filled.any():
        at = ring_starts[filled]
        lo_x, lo_y = np.minimum.reduceat(rx, at), np.minimum.reduceat(ry, at)
        boxes[filled] = np.stack(
            [lo_x, lo_y, np.maximum.reduceat(rx, at) - lo_x, np.maximum.reduceat(ry, at) - lo_y],
            axis=1,
        )
    boxes = round_coords(boxes)
    out: list[PixelPolygon | None] = [None] * count
    rings: dict[tuple[int, int], list[int]] = {}
    flats: list[list[float]] = [[] for _ in range(count)]
    arrays: list[np.ndarray | None] = [None] * count  # what pycocotools reads: no copy
    limit = limits.max_raster_work
    for i, (n, walk, begin, length, moved) in enumerate(
        zip(
            distinct.tolist(),
            steps.tolist(),
            ring_starts.tolist(),
            ring_lengths.tolist(),
            clipped.tolist(),
            strict=True,
        )
    ):
        if n < 3:
            out[i] = PixelPolygon(
                moved, reason="too_few_points", detail=f"{n} distinct point(s) after clipping"
            )
            continue
        ring_flat = flat_all[2 * begin : 2 * (begin + length)]
        if abs(walk - limit) <= 1e-6 * max(limit, 1):
            walk = ring_walk(ring_flat)  # at the limit: summed as the per-shape path sums
        if walk > limit:
            out[i] = PixelPolygon(
                moved,
                error=TooLargeError(
                    "shape_too_complex",
                    f"the outline walks {walk:.0f} pixels, limit {limit} (GTCOCO_MAX_RASTER_WORK)",
                    pointer_join(pointers[i], "points"),
                ),
            )
            continue
        flats[i] = ring_flat
        arrays[i] = ring_xy[begin : begin + length].ravel()
        rings.setdefault(sizes[i], []).append(i)
    box_list = boxes.tolist()
    for (w, h), members in rings.items():
        for chunk in range(0, len(members), AREA_BATCH):
            part = members[chunk : chunk + AREA_BATCH]
            areas = mask_utils.area(mask_utils.frPyObjects([arrays[i] for i in part], h, w))
            for i, area in zip(part, areas.tolist(), strict=True):
                if area <= 0:
                    out[i] = PixelPolygon(
                        int(clipped[i]), reason="zero_area", detail="the polygon covers no pixel"
                    )
                else:
                    out[i] = PixelPolygon(int(clipped[i]), flats[i], float(area), box_list[i])
    done = [p for p in out if p is not None]
    assert len(done) == count, "every polygon has an outcome"
    return done


def ring_walk(flat: Sequence[float]) -> float:
    """The pixels pycocotools steps through along a ring (its edges at 5x, summed)."""
    ring = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    return float(np.abs(ring - np.roll(ring, 1, axis=0)).max(axis=1).sum())
