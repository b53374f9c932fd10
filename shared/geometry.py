"""Pure geometry helpers: key order, ring walking, clipping and boxes."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]

_DIGITS = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=65536)  # point and edge names repeat across every shape
def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting `p10` after `p9`; digit runs compare as numbers."""
    parts = _DIGITS.split(name)
    return tuple((1, int(p)) if p.isdigit() else (0, p.lower()) for p in parts if p != "")


def natural_sorted(names: Sequence[str]) -> list[str]:
    return sorted(names, key=natural_key)


def _walk(start: str, neighbours: dict[str, list[str]], total: int) -> list[str] | None:
    """Follow a ring from `start`; None unless it visits every point exactly once.

    Every point has exactly two distinct neighbours (checked by the caller)."""
    order, seen = [start], {start}
    previous, current = "", start
    while True:
        first, second = neighbours[current]
        nxt = second if first == previous else first
        if nxt == start:
            return order if len(order) == total else None
        if nxt in seen or len(order) >= total:
            return None
        order.append(nxt)
        seen.add(nxt)
        previous, current = current, nxt


def ring_from_edges(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[str] | None:
    """Vertex order of the single ring the edges describe, or None if they do not form one.

    The walk starts at the naturally first point and leaves it along its naturally first
    edge, so the result does not depend on dict order.
    """
    if len(names) < 3 or len(edges) != len(names):
        return None
    known = set(names)
    neighbours: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        if a not in known or b not in known or a == b:
            return None
        neighbours[a].append(b)
        neighbours[b].append(a)
    if any(len(v) != 2 or v[0] == v[1] for v in neighbours.values()):
        return None
    start = min(names, key=natural_key)
    return _walk(start, neighbours, len(names))


def repair_edges(edges: Sequence[tuple[str, str]], names: Sequence[str]) -> list[tuple[str, str]]:
    """Drop self-loops, duplicates and edges naming unknown points (seen in real exports)."""
    known = set(names)
    seen: set[frozenset[str]] = set()
    kept = []
    for a, b in edges:
        pair = frozenset((a, b))
        if a == b or a not in known or b not in known or pair in seen:
            continue
        seen.add(pair)
        kept.append((a, b))
    return kept


def order_polygon(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> tuple[list[str], str]:
    """Order polygon vertices: by edges, by repaired edges, else by natural key order.

    Returns the order and how it was found: `edges`, `repaired_edges` or `natural_order`.
    """
    ring = ring_from_edges(names, edges)
    if ring is not None:
        return ring, "edges"
    if edges:
        repaired = repair_edges(edges, names)
        # A ring with one broken edge (`["p4", "p4"]` in a documented export) is an open
        # chain through every point: closing it is the repair.
        ring = ring_from_edges(names, repaired) or chain_from_edges(names, repaired)
        if ring is not None:
            return ring, "repaired_edges"
    return natural_sorted(list(names)), "natural_order"


def chain_from_edges(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[str] | None:
    """Vertex order of a single open chain (a line), or None."""
    if len(edges) != len(names) - 1 or len(names) < 2:
        return None
    known = set(names)
    neighbours: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        if a not in known or b not in known or a == b:
            return None
        neighbours[a].append(b)
        neighbours[b].append(a)
    ends = natural_sorted([n for n, v in neighbours.items() if len(v) == 1])
    if len(ends) != 2 or any(len(v) > 2 for v in neighbours.values()):
        return None
    order, seen = [ends[0]], {ends[0]}
    previous, current = "", ends[0]
    while current != ends[1]:
        nxt = next(n for n in neighbours[current] if n != previous)
        if nxt in seen:
            return None
        order.append(nxt)
        seen.add(nxt)
        previous, current = current, nxt
    return order if len(order) == len(names) else None


def clip_point(x: float, y: float, width: int, height: int) -> tuple[Point, bool]:
    """Clamp a pixel point to the image; report whether it moved."""
    cx = min(max(x, 0.0), float(width))
    cy = min(max(y, 0.0), float(height))
    return (cx, cy), (cx != x or cy != y)


def bbox_of(points: Sequence[Point]) -> list[float]:
    """COCO `[x, y, w, h]` from min/max over every point, whatever their order."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, y0 = min(xs), min(ys)
    return [x0, y0, max(xs) - x0, max(ys) - y0]


def round_coord(value: float) -> float:
    """Two decimals: sub-pixel precision, stable bytes, no float noise in outputs."""
    return round(value, 2) + 0.0


# --- The same rules on arrays: every point of a job at once -------------------------------

# x * 100 within this of a half is where numpy's rint(x * 100) / 100 may round the other
# way from Python's correctly rounded `round(x, 2)`: those few are rounded by Python.
_HALF_MARGIN = 1e-6


def round_coords(values: np.ndarray) -> np.ndarray:
    """`round_coord` of every element (bit for bit: near-half values go through Python)."""
    scaled = values * 100.0
    fraction = np.abs(scaled - np.floor(scaled) - 0.5)
    out = np.round(values, 2) + 0.0
    doubtful = np.flatnonzero((fraction < _HALF_MARGIN) | (np.abs(scaled) >= 2.0**52))
    if doubtful.size:
        flat = out.reshape(-1)
        source = values.reshape(-1)
        for i in doubtful.tolist():
            flat[i] = round_coord(float(source[i]))
    return out


def natural_ranks(names: Sequence[str]) -> np.ndarray:
    """Each name's rank in natural order; names whose keys are equal share a rank."""
    keys = sorted({natural_key(n) for n in set(names)})
    rank = {key: i for i, key in enumerate(keys)}
    by_name = {n: rank[natural_key(n)] for n in set(names)}
    return np.fromiter(map(by_name.__getitem__, names), dtype=np.int64, count=len(names))


# Rings longer than this, or groups of fewer rings than this, are walked one by one in
# Python (`ring_from_edges`): a step of the array walk costs the same for 1 ring as for 1,000.
ARRAY_WALK_MIN_RINGS = 16


def walk_rings(
    sizes: np.ndarray, ranks: np.ndarray, first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`ring_from_edges` for many polygons at once, on index arrays.

    The `sizes[s]` points of polygon s are consecutive in the point arrays (global
    indices; `ranks` is each point's natural rank); polygon s has exactly `sizes[s]` edges,
    the point pairs `first[e]`, `second[e]`, grouped by polygon and each polygon's in their
    natural order.  Returns `walked` (per polygon: its edges are one ring through every
    point, and it was walked here) and `order`, where each walked polygon's stretch of
    point positions holds its points' indices in walk order.  A polygon not walked is not a
    ring, or falls in a group too small for the array walk to pay: the caller walks it.
    """
    count = sizes.size
    total = int(sizes.sum())
    owner = np.repeat(np.arange(count), sizes)
    walked = sizes >= 3
    # Every point has two edges, none a loop, and its two neighbours differ.
    ends = np.stack([first, second], axis=1).ravel()
    others = np.stack([second, first], axis=1).ravel()
    degree = np.bincount(ends, minlength=total)
    bad_point = degree != 2
    walked &= np.bincount(owner, weights=bad_point, minlength=count) == 0
    loops = first == second
    walked &= np.bincount(owner[first[loops]], minlength=count) == 0
    by_point = np.argsort(ends, kind="stable")  # each point's edges, in edge order
    slot = np.minimum(np.cumsum(degree) - degree, max(by_point.size - 2, 0))
    near = others[by_point[slot]] if by_point.size > 1 else np.zeros(total, np.int64)
    far = others[by_point[slot + 1]] if by_point.size > 1 else near
    walked &= np.bincount(owner, weights=(near == far) & ~bad_point, minlength=count) == 0
    # The walk starts at the naturally first point (the first of equal keys) and leaves it
    # towards the other end of its first edge.
    by_rank = np.lexsort((np.arange(total), ranks, owner))
    start = by_rank[
        np.minimum(np.searchsorted(owner[by_rank], np.arange(count)), max(total - 1, 0))
    ]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    order = np.zeros(total, dtype=np.int64)
    candidates = np.flatnonzero(walked)
    buckets = 2 ** np.ceil(np.log2(np.maximum(sizes[candidates], 1))).astype(np.int64)
    for bound in np.unique(buckets).tolist():
        group = candidates[buckets == bound]
        if group.size < ARRAY_WALK_MIN_RINGS:
            walked[group] = False
            continue
        steps = int(sizes[group].max())
        path = np.empty((group.size, steps + 1), dtype=np.int64)
        current, previous = start[group], np.full(group.size, -1, dtype=np.int64)
        path[:, 0] = current
        for step in range(1, steps + 1):
            a, b = near[current], far[current]
            current, previous = np.where(a == previous, b, a), current
            path[:, step] = current
        back = path[:, 1:] == start[group][:, None]
        first_back = np.where(back.any(axis=1), back.argmax(axis=1) + 1, -1)
        closed = first_back == sizes[group]
        walked[group[~closed]] = False
        inside = (np.arange(steps)[None, :] < sizes[group][:, None]) & closed[:, None]
        order[(starts[group][:, None] + np.arange(steps)[None, :])[inside]] = path[:, :steps][
            inside
        ]
    return walked, order
