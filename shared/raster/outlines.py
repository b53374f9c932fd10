"""Exact pixel-edge outlines: polygons that pycocotools rasterises to exactly a region.

pycocotools covers a pixel when its centre is inside the polygon, so a polygon running
along the pixels' own edges (vertices on pixel corners) decodes to exactly those pixels:
IoU 1, no lost slivers, no grown borders.  Two ways to draw one: from the runs, for all
regions that are one run per row at once; and from a traced border, for any other region
of one component without holes.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.raster.runs import IntArray, RowRuns, ranges


def outline_polygons(runs: RowRuns, indices: IntArray) -> list[list[int]]:
    """Exact pixel-outline polygon of each row-convex colour in `indices`.

    Vertices sit on pixel corners: down the left edges of the runs, up the right edges,
    one vertex pair where an edge steps.  pycocotools rasterises such an outline to
    exactly the region's pixels (a pixel is in when its centre is), so IoU is 1.
    """
    if not indices.size:
        return []
    spans, per = runs.of_colors(indices)
    y, s, e = spans.row, spans.x0, spans.x1
    group = np.repeat(np.arange(indices.size), per)
    first = np.r_[True, group[1:] != group[:-1]]
    last = np.r_[group[1:] != group[:-1], True]
    s_prev, e_prev = np.r_[0, s[:-1]], np.r_[0, e[:-1]]
    step_l = ~first & (s != s_prev)
    step_r = ~first & (e != e_prev)
    left = _slots([(s, y, first), (s_prev, y, step_l), (s, y, step_l), (s, y + 1, last)])
    right = _slots(
        [(e, y + 1, last), (e, y, step_r), (e_prev, y, step_r), (e, y, first)], reverse=True
    )
    left_n = np.bincount(np.repeat(group, 4)[left[1]], minlength=indices.size)
    right_n = np.bincount(np.repeat(group, 4)[::-1][right[1]], minlength=indices.size)
    total = left_n + right_n
    offset = np.r_[0, np.cumsum(total)[:-1]]
    out = np.empty((int(total.sum()), 2), dtype=np.intp)
    out[ranges(offset, left_n)] = left[0]
    # The right-hand vertices come colour by colour in reverse colour order.
    out[ranges((offset + left_n)[::-1], right_n[::-1])] = right[0]
    return _flat_polygons(out, total)


def _slots(
    slots: list[tuple[IntArray, IntArray, npt.NDArray[np.bool_]]], reverse: bool = False
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Vertices from up to four candidate slots per run, in run order (or reversed)."""
    xs = np.stack([x for x, _, _ in slots], axis=1)
    ys = np.stack([y for _, y, _ in slots], axis=1)
    on = np.stack([m for _, _, m in slots], axis=1)
    if reverse:
        xs, ys, on = xs[::-1], ys[::-1], on[::-1]
    on_flat = on.reshape(-1)
    return np.stack([xs.reshape(-1)[on_flat], ys.reshape(-1)[on_flat]], axis=1), on_flat


def _corner_table() -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Outline corners to emit at a border pixel, by (direction back, direction on).

    OpenCV follows an outer border by turning counter-clockwise (y down) from the way
    back to the first pixel of the region; every neighbour passed on the way is outside,
    so the edges of this pixel facing the passed 4-neighbours are on the outline, in that
    order.  The edges of consecutive pixels join end to start, so each edge contributes
    its first corner.  Corners are offsets from the pixel's top-left corner.
    Returns, per code back * 8 + on (64: a lone pixel), the first index and count in the
    corner arrays x and y.
    """
    # 8 directions, clockwise on screen: E, SE, S, SW, W, NW, N, NE.
    first_corner = {0: (1, 1), 2: (0, 1), 4: (0, 0), 6: (1, 0)}
    starts: list[int] = []
    counts: list[int] = []
    xs: list[int] = []
    ys: list[int] = []
    for code in range(65):
        back, on = divmod(code, 8)
        passed = [(back - k) % 8 for k in range(1, (back - on) % 8 or 8)]
        corners = [first_corner[d] for d in passed if d in first_corner]
        if code == _LONE:
            corners = [(0, 0), (0, 1), (1, 1), (1, 0)]
        starts.append(len(xs))
        counts.append(len(corners))
        xs += [x for x, _ in corners]
        ys += [y for _, y in corners]
    return (
        np.array(starts, dtype=np.intp),
        np.array(counts, dtype=np.intp),
        np.array(xs, dtype=np.intp),
        np.array(ys, dtype=np.intp),
    )


_LONE = 64
_CORNER_START, _CORNER_COUNT, _CORNER_X, _CORNER_Y = _corner_table()
# Direction index of a step (dx, dy), looked up as _DIRECTION[dy + 1, dx + 1].
_DIRECTION = np.array([[5, 6, 7], [4, -1, 0], [3, 2, 1]], dtype=np.intp)


def traced_outlines(borders: list[tuple[npt.NDArray[Any], int, int]]) -> list[list[int]]:
    """Exact outlines of regions of one component without holes, from their outer borders
    (`cv2.findContours` with CHAIN_APPROX_NONE: every border pixel, in order) and the
    offsets (x0, y0) to add, all in one vectorised pass."""
    if not borders:
        return []
    sizes = np.array([len(b) for b, _, _ in borders], dtype=np.intp)
    pixels = np.concatenate([b.reshape(-1, 2) for b, _, _ in borders]).astype(np.intp)
    offsets = np.repeat(np.array([(x0, y0) for _, x0, y0 in borders], dtype=np.intp), sizes, axis=0)
    pixels += offsets
    after, before = _cyclic_neighbours(sizes)
    step = pixels[after] - pixels
    on = _DIRECTION[step[:, 1] + 1, step[:, 0] + 1]
    back = (on[before] + 4) % 8  # the way back is the previous step reversed
    code = np.where(on < 0, _LONE, back * 8 + on)
    count = _CORNER_COUNT[code]
    pick = ranges(_CORNER_START[code], count)
    x = _CORNER_X[pick] + np.repeat(pixels[:, 0], count)
    y = _CORNER_Y[pick] + np.repeat(pixels[:, 1], count)
    corners = np.bincount(
        np.repeat(np.arange(sizes.size), sizes), weights=count, minlength=sizes.size
    ).astype(np.intp)
    after, before = _cyclic_neighbours(corners)
    # A straight edge needs only its two ends.
    keep = ~(((x == x[before]) & (x == x[after])) | ((y == y[before]) & (y == y[after])))
    out = np.empty((int(keep.sum()), 2), dtype=np.intp)
    out[:, 0], out[:, 1] = x[keep], y[keep]
    return _flat_polygons(out, np.add.reduceat(keep, np.r_[0, np.cumsum(corners)[:-1]]))


def _flat_polygons(points: IntArray, counts: IntArray) -> list[list[int]]:
    """Consecutive runs of `counts` (x, y) points as COCO's flat [x0, y0, x1, y1, ...]."""
    flat = points.reshape(-1).tolist()
    edges = (2 * np.r_[0, np.cumsum(counts)]).tolist()
    return [flat[a:b] for a, b in pairwise(edges)]


def _cyclic_neighbours(sizes: IntArray) -> tuple[IntArray, IntArray]:
    """Index of the next and of the previous element, cyclic within consecutive groups
    of the given sizes."""
    total = int(sizes.sum())
    ends = np.cumsum(sizes)
    starts = ends - sizes
    after = np.arange(1, total + 1)
    after[ends - 1] = starts
    before = np.arange(-1, total - 1)
    before[starts] = ends - 1
    return after, before
