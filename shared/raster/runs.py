"""Run-length views of a label image.

Segmentation masks are piecewise constant, so runs are far fewer than pixels.  Two
vectorised passes find every run (along rows, and down columns in COCO's order); after
that, every colour's box, pixel count, Euler number and exact COCO RLE come from the runs
alone, for all colours at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Spans:
    """Horizontal runs: row, first column, column after the last."""

    row: IntArray
    x0: IntArray
    x1: IntArray

    def take(self, at: IntArray) -> Spans:
        return Spans(self.row[at], self.x0[at], self.x1[at])


@dataclass(frozen=True)
class RowRuns:
    """Maximal horizontal runs (they tile the image), twice over.

    `colors` are the distinct values, ascending.  `raster` has the runs in raster order,
    `index[i]` being run i's colour; `grouped` has them colour by colour (rows ascending
    within a colour), colour i's from `bounds[i]` on.
    """

    colors: npt.NDArray[np.uint32]
    raster: Spans
    index: IntArray
    grouped: Spans
    bounds: IntArray

    def of_colors(self, indices: IntArray) -> tuple[Spans, IntArray]:
        """The runs of the colours in `indices`, colour after colour in that order (rows
        ascending within each), and how many runs each colour has."""
        bounds = np.r_[self.bounds, self.index.size]
        per = bounds[indices + 1] - bounds[indices]
        return self.grouped.take(ranges(bounds[indices], per)), per


@dataclass(frozen=True)
class Regions:
    """Per colour (same order as `RowRuns.colors`): box, pixel count, and whether the
    region is one run per row, each row overlapping the next (one 4-connected component
    without holes whose exact outline `outline_polygons` can draw)."""

    x0: IntArray
    y0: IntArray
    x1: IntArray
    y1: IntArray
    pixels: IntArray
    row_convex: npt.NDArray[np.bool_]


def row_bands(height: int, width: int, pixels: int = 1 << 22) -> list[tuple[int, int]]:
    """Row ranges of about `pixels` pixels (4 M): whole-image passes in bands reuse one
    small scratch buffer instead of touching fresh full-frame ones (page faults cost more
    than the comparisons at 64 MP)."""
    step = max(1, pixels // max(width, 1))
    return [(r, min(height, r + step)) for r in range(0, height, step)]


def _change_starts(packed: npt.NDArray[np.uint32], vertical: bool) -> IntArray:
    """Flat row-major indices where a run starts: along rows (each row's first pixel
    included), or down columns (each column's top included when it differs from the
    previous column's bottom, since COCO's runs flow from one column into the next)."""
    height, width = packed.shape
    scratch = np.empty(min(height * width, max(width, 1 << 22)), dtype=bool)
    found = []
    for r0, r1 in row_bands(height, width):
        flags = scratch[: (r1 - r0) * width].reshape(r1 - r0, width)
        if not vertical:
            flags[:, 0] = True
            np.not_equal(packed[r0:r1, 1:], packed[r0:r1, :-1], out=flags[:, 1:])
        elif r0 == 0:
            flags[0, 0] = True
            np.not_equal(packed[0, 1:], packed[-1, :-1], out=flags[0, 1:])
            np.not_equal(packed[1:r1], packed[: r1 - 1], out=flags[1:])
        else:
            np.not_equal(packed[r0:r1], packed[r0 - 1 : r1 - 1], out=flags)
        found.append(np.flatnonzero(flags) + r0 * width)
    return np.concatenate(found)


def row_runs(packed: npt.NDArray[np.uint32]) -> RowRuns:
    height, width = packed.shape
    # flatnonzero plus divmod is several times faster than a 2-D nonzero.
    starts = _change_starts(packed, vertical=False)
    row, x0 = np.divmod(starts, width)
    x1 = np.empty_like(x0)
    x1[:-1] = x0[1:]
    x1[-1] = width
    x1[:-1][row[1:] != row[:-1]] = width
    values = packed.reshape(-1)[starts]  # a 1-D take: 4x faster than packed[row, x0]
    # Sorting (colour, position) keys groups the runs by colour, rows ascending within a
    # colour, and yields the distinct colours: 5x faster than a stable argsort.
    keys = (values.astype(np.uint64) << np.uint64(32)) | np.arange(values.size, dtype=np.uint64)
    keys.sort()
    order = (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)
    grouped = (keys >> np.uint64(32)).astype(np.uint32)
    bounds = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    colors = grouped[bounds]
    index = np.empty_like(order)
    index[order] = np.repeat(np.arange(bounds.size), np.diff(np.r_[bounds, order.size]))
    raster = Spans(row, x0, x1)
    return RowRuns(colors, raster, index, raster.take(order), bounds)


def region_summary(runs: RowRuns) -> Regions:
    row, x0, x1 = runs.grouped.row, runs.grouped.x0, runs.grouped.x1
    b = runs.bounds
    last = np.r_[b[1:], row.size] - 1
    first = np.zeros(row.size, dtype=bool)
    first[b] = True
    # A break: the previous run of the same colour is not on the row just above, or the
    # two do not share a column (touching only at a corner counts as a break).
    broken = np.zeros(row.size, dtype=bool)
    broken[1:] = (row[1:] != row[:-1] + 1) | (x0[1:] >= x1[:-1]) | (x0[:-1] >= x1[1:])
    broken &= ~first
    return Regions(
        x0=np.minimum.reduceat(x0, b),
        y0=row[b],
        x1=np.maximum.reduceat(x1, b),
        y1=row[last] + 1,
        pixels=np.add.reduceat(x1 - x0, b),
        row_convex=~np.logical_or.reduceat(broken, b),
    )


def euler_numbers(runs: RowRuns, indices: IntArray, width: int) -> IntArray:
    """Components minus holes (8-connected pixels, 4-connected holes) of each colour in
    `indices`: its runs minus the contacts between runs in adjacent rows.

    Each contact joins two pieces or closes a loop around a hole.  The runs of one row
    are disjoint and sorted, so the runs a run touches in the row above are a contiguous
    range, found by two binary searches on (colour, row, x) keys.
    """
    if not indices.size:
        return np.zeros(0, dtype=np.intp)
    spans, per = runs.of_colors(indices)
    row, x0, x1 = spans.row, spans.x0, spans.x1
    color = np.repeat(np.arange(indices.size), per)
    line = (color * (int(row.max(initial=0)) + 2) + row) * (width + 2)
    above = line - (width + 2)
    lo = np.searchsorted(line + x1, above + x0, side="left")
    hi = np.searchsorted(line + x0, above + x1, side="right")
    contacts = np.maximum(hi - lo, 0)
    euler: IntArray = np.add.reduceat(1 - contacts, np.r_[0, np.cumsum(per)[:-1]])
    return euler


def column_runs(packed: npt.NDArray[np.uint32]) -> tuple[IntArray, npt.NDArray[np.uint32]]:
    """Start (flat column-major index) and value of every run in COCO's pixel order.

    Runs continue from the bottom of one column to the top of the next, as COCO's do.
    Changes are found along rows (contiguous memory); only the run starts, far fewer than
    the pixels, are reordered into column order.
    """
    height, width = packed.shape
    row, col = np.divmod(_change_starts(packed, vertical=True), width)
    start = np.sort(col * height + row)
    col, row = np.divmod(start, height)
    return start, packed.reshape(-1)[row * width + col]


def rle_strings(
    start: IntArray, values: npt.NDArray[np.uint32], wanted: npt.NDArray[np.uint32], total: int
) -> list[str]:
    """Compressed COCO RLE `counts` of `values == w` for each w in `wanted` (ascending).

    Equal to what pycocotools' `encode` gives for the same mask, for every colour in one
    vectorised pass over the runs.
    """
    if not wanted.size:
        return []
    ends = np.r_[start[1:], total]
    slot = np.searchsorted(wanted, values)
    slot[slot == wanted.size] = 0
    keep = wanted[slot] == values
    slot, start, ends = slot[keep], start[keep], ends[keep]
    order = np.argsort(slot, kind="stable")
    slot, start, ends = slot[order], start[order], ends[order]
    groups = wanted.size
    runs_per = np.bincount(slot, minlength=groups)
    first = np.r_[0, np.cumsum(runs_per)[:-1]]
    is_first = np.zeros(slot.size, dtype=bool)
    is_first[first[runs_per > 0]] = True
    prev_end = np.r_[0, ends[:-1]]
    prev_end[is_first] = 0
    last_end = np.zeros(groups, dtype=np.intp)
    has = runs_per > 0
    last_end[has] = ends[first[has] + runs_per[has] - 1]
    tail = total - last_end
    # counts: gap and length per run, then the zeros after the last run (COCO leaves a
    # zero tail out).
    lengths = 2 * runs_per + (tail > 0)
    group_start = np.r_[0, np.cumsum(lengths)[:-1]]
    counts = np.empty(int(lengths.sum()), dtype=np.intp)
    at = group_start[slot] + 2 * (np.arange(slot.size) - first[slot])
    counts[at] = start - prev_end
    counts[at + 1] = ends - start
    counts[(group_start + lengths - 1)[tail > 0]] = tail[tail > 0]
    return _leb_strings(counts, group_start, lengths)


def _leb_strings(counts: IntArray, group_start: IntArray, lengths: IntArray) -> list[str]:
    """pycocotools' rleToString for many count lists at once.

    Each count from the fourth on is stored as the difference to the one two before it,
    then written 5 bits per character, low bits first (bit 5 = more follows, bit 4 of the
    last character = sign), characters offset by 48.
    """
    local = np.arange(counts.size) - np.repeat(group_start, lengths)
    x = counts.copy()
    delta = np.flatnonzero(local > 2)
    x[delta] -= counts[delta - 2]
    # Characters per value: the fewest 5-bit groups holding its bits plus a sign bit.
    magnitude = np.where(x < 0, ~x, x)
    per_value = np.searchsorted(_LEB_LIMITS, magnitude, side="right") + 1
    value_of = np.repeat(np.arange(x.size), per_value)
    k = np.arange(value_of.size) - np.repeat(np.cumsum(per_value) - per_value, per_value)
    chars = (x[value_of] >> (5 * k)) & 0x1F
    chars += 48 + 32 * (k < per_value[value_of] - 1)
    flat = chars.astype(np.uint8).tobytes().decode("ascii")
    per_group = np.add.reduceat(per_value, group_start)
    edges = np.r_[0, np.cumsum(per_group)].tolist()
    return [flat[a:b] for a, b in pairwise(edges)]


# 16 * 32**k: the first magnitude needing k + 2 characters.
_LEB_LIMITS = np.array([16 << (5 * k) for k in range(8)], dtype=np.intp)


def ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """Concatenation of range(starts[i], starts[i] + lengths[i])."""
    total = int(lengths.sum())
    return np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(total)
