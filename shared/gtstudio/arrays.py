"""A list of polygons parsed together: every point in one array, validated and ordered with
numpy, the same `Shape`s as `parse_shape` on each item.

Per item, Python reads only what is not per vertex (label, id, attributes, the names of the
points and edges); the coordinates of the whole list are checked at once and the rings are
walked on index arrays (`geometry.walk_rings`).  What the fast path does not handle it gives
back: a list in which anything is wrong or unusual (a bad coordinate, a label error, points
as a list, int point names) is parsed again item by item by `parse_shape`, which raises the
same first error with the same pointer; a polygon whose edges are not a clean ring (repaired
in real exports) is ordered by the per-shape code, which writes the notes.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.config import Limits
from shared.errors import ConversionError, pointer_join
from shared.geometry import natural_key, natural_ranks, walk_rings
from shared.gtstudio.records import Note, Shape, shape_from
from shared.gtstudio.shapes import (
    COORD_MAX,
    COORD_MIN,
    edge_list,
    parse_shape,
    polygon_order,
    shape_fields,
)
from shared.memo import short_key_cache

_X, _Y = operator.itemgetter("x"), operator.itemgetter("y")
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_NUMBERS = frozenset({float, int})  # exact types: bool must not pass


class _GiveBack(Exception):
    """The list holds something the fast path leaves to `parse_shape`."""


@short_key_cache(maxsize=4096)  # edge names repeat across every polygon of a job
def _natural_order(names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The names in natural order; None if they are in it already."""
    found = tuple(sorted(names, key=natural_key))
    return None if found == names else found


def parse_polygons(items: Sequence[Any], pointer: str, limits: Limits) -> list[Shape]:
    """`[parse_shape("polygon", item, pointer/i) for i, item in enumerate(items)]`."""
    try:
        return _parse(items, pointer, limits)
    except (_GiveBack, ConversionError):
        return [
            parse_shape("polygon", item, pointer_join(pointer, i), limits)
            for i, item in enumerate(items)
        ]


@short_key_cache(maxsize=4096)  # real exports name points p1..pN: few layouts repeat
def _documented_ring(names: tuple[str, ...]) -> tuple[list[list[str]], np.ndarray | None] | None:
    """The documented polygon layout for these point names (dict order): the edges, in the
    natural order of their names, `[q0, q1], [q1, q2], ..., [qN-1, q0]` for the points in
    natural order q; and where those points are (None: the dict order is already that).

    Edges equal to these are one ring, walked from q0 (the naturally first point, the
    first of equal keys) towards q1 (its first edge's other end), so the drawing order is
    q: exactly what `ring_from_edges` finds, without walking.
    """
    if len(names) < 3:
        return None
    positions = sorted(range(len(names)), key=lambda j: natural_key(names[j]))
    ring = [names[j] for j in positions]
    edges = [[a, b] for a, b in zip(ring, ring[1:] + ring[:1], strict=True)]
    if positions == list(range(len(names))):
        return edges, None
    found = np.array(positions, dtype=np.int64)
    found.flags.writeable = False
    return edges, found


class _Codes(dict[Any, int]):
    """Name -> small integer; -1 for a name no point has (a broken edge, an int name)."""

    def __missing__(self, key: Any) -> int:
        return -1


def _parse(items: Sequence[Any], pointer: str, limits: Limits) -> list[Shape]:
    states: list[dict[str, Any]] = []  # each polygon's Shape fields so far
    noted: list[list[Note]] = []
    xs: list[Any] = []
    ys: list[Any] = []
    names: list[str] = []  # every polygon's point names, in document order
    owns: list[tuple[str, ...]] = []  # the same, a tuple a polygon
    edge_counts: list[int] = []  # 0: no edges object (the per-shape code reads the rest)
    pairs: list[Any] = []
    documented: dict[int, np.ndarray | None] = {}  # polygon: positions in walk order
    for i, item in enumerate(items):
        # pointer_join without escaping: an index needs none.
        found, notes = shape_fields("polygon", item, f"{pointer}/{i}", limits)
        raw = item.get("points")
        if type(raw) is not dict or len(raw) > limits.max_points_per_shape:
            raise _GiveBack
        try:
            xs.extend(map(_X, raw.values()))
            ys.extend(map(_Y, raw.values()))
        except (TypeError, KeyError) as exc:
            raise _GiveBack from exc
        own = tuple(raw)
        names.extend(own)
        owns.append(own)
        edges = item.get("edges")
        if type(edges) is dict:
            named = _natural_order(tuple(edges))
            in_order = (
                list(edges.values()) if named is None else list(map(edges.__getitem__, named))
            )
            layout = _documented_ring(own)
            if layout is not None and in_order == layout[0]:  # compares the pairs whole
                documented[i] = layout[1]
                edge_counts.append(0)
            else:
                pairs.extend(in_order)
                edge_counts.append(len(in_order))
        else:
            edge_counts.append(0)
        states.append(found)
        noted.append(notes)
    sizes = list(map(len, owns))  # points of each polygon
    if not {*map(type, xs), *map(type, ys)} <= _NUMBERS or {*map(type, names)} - {str}:
        raise _GiveBack
    try:
        points = np.array([xs, ys], dtype=np.float64).T
    except OverflowError as exc:  # an integer beyond float: the per-item check names it
        raise _GiveBack from exc
    if not bool(np.all((points >= COORD_MIN) & (points <= COORD_MAX))):  # NaN fails too
        raise _GiveBack
    size_array = np.array(sizes, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(size_array)[:-1])).astype(np.int64)
    walked, permutation = _rings(
        size_array, starts, names, pairs, np.array(edge_counts, dtype=np.int64)
    )
    for k, positions in documented.items():
        walked[k] = True
        if positions is not None:
            permutation[starts[k] : starts[k] + sizes[k]] = positions + starts[k]
    for k in np.flatnonzero(~walked).tolist():  # not a clean ring, or alone: per shape
        found, notes, item = states[k], noted[k], items[k]
        members = names[starts[k] : starts[k] + sizes[k]]
        edges = edge_list(item.get("edges"), pointer_join(found["pointer"], "edges"), notes)
        index = {n: j for j, n in enumerate(members)}
        order = polygon_order(members, edges, item, found["pointer"], notes)
        permutation[starts[k] : starts[k] + sizes[k]] = (
            np.fromiter(map(index.__getitem__, order), dtype=np.int64, count=len(order)) + starts[k]
        )
    moved = permutation != np.arange(permutation.size)
    if moved.any():
        ordered = points[permutation]
        ordered_names = list(map(names.__getitem__, permutation.tolist()))
        owner_moved = np.bincount(
            np.repeat(np.arange(size_array.size), size_array), weights=moved, minlength=len(owns)
        )
        for k in np.flatnonzero(owner_moved).tolist():
            owns[k] = tuple(ordered_names[starts[k] : starts[k] + sizes[k]])
    else:  # the usual case: every polygon's points are in the dict in drawing order
        ordered = points
    ordered.flags.writeable = False
    shapes, at = [], 0
    for found, notes, own in zip(states, noted, owns, strict=True):
        end = at + len(own)
        found["coords"] = ordered[at:end]
        found["point_names"] = own
        found["notes"] = tuple(notes) if notes else ()
        shapes.append(shape_from(found))
        at = end
    return shapes


def _plain_pairs(pairs: list[Any], counts: np.ndarray) -> np.ndarray:
    """Whether each polygon's edges are all two-item lists (else: the per-shape code)."""
    if {*map(type, pairs)} <= {list} and {*map(len, pairs)} <= {2}:
        return counts > 0
    plain, at = [], 0
    for count in counts.tolist():  # rare: some edges are junk or objects
        own = pairs[at : at + count]
        at += count
        plain.append(count > 0 and all(type(p) is list and len(p) == 2 for p in own))
    return np.array(plain, dtype=bool)


def _rings(
    sizes: np.ndarray, starts: np.ndarray, names: list[str], pairs: list[Any], counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which polygons were walked (edges as many as its points, all pairs of its own point
    names, one ring), and the permutation putting each one's points in walk order."""
    walkable = _plain_pairs(pairs, counts) & (counts == sizes)
    permutation = np.arange(len(names), dtype=np.int64)
    if not walkable.any():
        return walkable, permutation
    # Names as small integers (few distinct names repeat over every polygon), then each edge
    # end as the global index of its polygon's point of that name.
    code = _Codes((n, i) for i, n in enumerate(dict.fromkeys(names)))
    width = max(len(code), 1)
    point_codes = np.fromiter(map(code.__getitem__, names), np.int64, len(names))
    owner = np.repeat(np.arange(sizes.size), sizes)
    point_keys = owner * width + point_codes
    by_key = np.argsort(point_keys)
    sorted_keys = point_keys[by_key]
    edge_owner = np.repeat(np.arange(sizes.size), counts)
    take = walkable[edge_owner]
    if not take.all():
        pairs = [p for p, keep in zip(pairs, take.tolist(), strict=True) if keep]
        edge_owner = edge_owner[take]

    def resolve(position: operator.itemgetter[Any]) -> tuple[np.ndarray, np.ndarray]:
        try:
            codes = np.fromiter(map(code.__getitem__, map(position, pairs)), np.int64, len(pairs))
        except TypeError:  # an unhashable end: every polygon to the per-shape code
            codes = np.full(len(pairs), -1, dtype=np.int64)
        keys = edge_owner * width + codes
        at = np.minimum(np.searchsorted(sorted_keys, keys), max(sorted_keys.size - 1, 0))
        return by_key[at], (sorted_keys[at] == keys) & (codes >= 0)

    a, a_known = resolve(_FIRST)
    b, b_known = resolve(_SECOND)
    walkable &= np.bincount(edge_owner, weights=~(a_known & b_known), minlength=sizes.size) == 0
    chosen = np.flatnonzero(walkable)
    if not chosen.size:
        return walkable, permutation
    # The chosen polygons' points renumbered 0..n-1 (walk_rings wants them consecutive).
    shift = np.zeros(sizes.size, dtype=np.int64)
    shift[chosen] = np.concatenate(([0], np.cumsum(sizes[chosen])[:-1])) - starts[chosen]
    keep = walkable[edge_owner]
    points_chosen = walkable[owner]
    ranks = natural_ranks(list(code))[point_codes][points_chosen]
    walked, order = walk_rings(
        sizes[chosen], ranks, (a + shift[edge_owner])[keep], (b + shift[edge_owner])[keep]
    )
    done = np.zeros(sizes.size, dtype=bool)
    done[chosen[walked]] = True
    mine = done[owner]
    permutation[mine] = (
        order[walked[np.repeat(np.arange(chosen.size), sizes[chosen])]] - shift[owner[mine]]
    )
    return done, permutation
