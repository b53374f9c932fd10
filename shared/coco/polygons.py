"""Every polygon of a job to pixels at once: scale, clip, round, ring clean-up, boxes and
pycocotools areas on arrays, the same numbers as the per-shape path in `builder.py`.

Pure: no IO.  The per-shape path stays the reference (frames too large for pycocotools go
through it, and the tests compare the two on generated polygons).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from shared.config import Limits
from shared.errors import TooLargeError, pointer_join
from shared.geometry import round_coords

# pycocotools' area() keeps the count of RLEs in 8 bits: more per call overflows.
AREA_BATCH = 255


@dataclass(frozen=True)
class PixelPolygon:
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
    points = np.concatenate(coords) if count else np.zeros((0, 2))
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
    np.maximum.at(last, owner[keep], index[keep])
    kept_count = np.bincount(owner[keep], minlength=count)
    closing = (kept_count > 1) & (last >= 0)
    closing &= (x[np.maximum(last, 0)] == x[starts]) & (y[np.maximum(last, 0)] == y[starts])
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
    flat_all = np.stack([rx, ry], axis=1).ravel().tolist()
    lo_x = np.full(count, np.inf)
    lo_y = np.full(count, np.inf)
    hi_x = np.full(count, -np.inf)
    hi_y = np.full(count, -np.inf)
    np.minimum.at(lo_x, ring_owner, rx)
    np.minimum.at(lo_y, ring_owner, ry)
    np.maximum.at(hi_x, ring_owner, rx)
    np.maximum.at(hi_y, ring_owner, ry)
    boxes = round_coords(np.stack([lo_x, lo_y, hi_x - lo_x, hi_y - lo_y], axis=1))
    out: list[PixelPolygon | None] = [None] * count
    rings: dict[tuple[int, int], list[int]] = {}
    flats: list[list[float]] = [[] for _ in range(count)]
    for i in range(count):
        n = int(distinct[i])
        if n < 3:
            out[i] = PixelPolygon(
                int(clipped[i]),
                reason="too_few_points",
                detail=f"{n} distinct point(s) after clipping",
            )
            continue
        walk = float(steps[i])
        begin = int(ring_starts[i])
        ring_flat = flat_all[2 * begin : 2 * (begin + int(ring_lengths[i]))]
        if abs(walk - limits.max_raster_work) <= 1e-6 * max(limits.max_raster_work, 1):
            walk = ring_walk(ring_flat)  # at the limit: summed as the per-shape path sums
        if walk > limits.max_raster_work:
            out[i] = PixelPolygon(
                int(clipped[i]),
                error=TooLargeError(
                    "shape_too_complex",
                    f"the outline walks {walk:.0f} pixels, limit {limits.max_raster_work} "
                    "(GTCOCO_MAX_RASTER_WORK)",
                    pointer_join(pointers[i], "points"),
                ),
            )
            continue
        flats[i] = ring_flat
        rings.setdefault(sizes[i], []).append(i)
    box_list = boxes.tolist()
    for (w, h), members in rings.items():
        for chunk in range(0, len(members), AREA_BATCH):
            part = members[chunk : chunk + AREA_BATCH]
            areas = mask_utils.area(mask_utils.frPyObjects([flats[i] for i in part], h, w))
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
