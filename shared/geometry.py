"""Pure geometry helpers: key order, ring walking, clipping and boxes."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

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
