"""The array path for a list of polygons against the per-item reference (`parse_shape` on
each item): the same shapes, or the same first error with the same pointer."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Limits
from shared.errors import ConversionError
from shared.geometry import natural_key, ring_from_edges
from shared.gtstudio import arrays
from shared.gtstudio.arrays import parse_polygons
from shared.gtstudio.records import Shape
from shared.gtstudio.shapes import parse_shape
from shared.memo import LONGEST_KEY

LIMITS = Limits()


def reference(items: list[Any], pointer: str = "/polygons") -> list[Shape] | tuple[str, str]:
    try:
        return [parse_shape("polygon", item, f"{pointer}/{i}", LIMITS)
                for i, item in enumerate(items)]
    except ConversionError as error:
        return error.code, error.pointer


def fast(items: list[Any], pointer: str = "/polygons") -> list[Shape] | tuple[str, str]:
    try:
        return parse_polygons(items, pointer, LIMITS)
    except ConversionError as error:
        return error.code, error.pointer


def same(found: Any, expected: Any) -> None:
    if isinstance(expected, tuple):
        assert found == expected
        return
    assert isinstance(found, list) and len(found) == len(expected)
    for a, b in zip(found, expected, strict=True):
        assert a == b  # every field but the coordinates
        assert a.points == b.points
        assert a.coords.dtype == b.coords.dtype and a.coords.shape == b.coords.shape


def ring_item(n: int, rnd: random.Random, *, names: str = "p", shuffle_points: bool = False,
              shuffle_edges: bool = False, reverse: bool = False, start: int = 0,
              coordinate: Any = None) -> dict[str, Any]:
    ids = [f"{names}{k + 1}" for k in range(n)]
    ring = ids[start:] + ids[:start]
    if reverse:
        ring = ring[::-1]
    points = {name: {"x": round(rnd.random(), 4), "y": round(rnd.random(), 4)} for name in ids}
    if coordinate is not None:
        points[ids[rnd.randrange(n)]] = coordinate
    if shuffle_points:
        order = list(points.items())
        rnd.shuffle(order)
        points = dict(order)
    edges = [[a, b] for a, b in zip(ring, ring[1:] + ring[:1], strict=True)]
    keys = [f"e{k + 1}" for k in range(n)]
    if shuffle_edges:
        rnd.shuffle(keys)
    return {"label": "c", "_id": f"id{n}", "points": points,
            "edges": dict(zip(keys, edges, strict=True)), "attributes": {"a": {"value": 1}}}


BROKEN_EDGES: list[Any] = [
    None, {}, [], "junk", {"e1": ["p1", "p1"]}, {"e1": ["p1", "p2"], "e2": ["p2", "p1"]},
    {"e1": {"from": "p1", "to": "p2"}, "e2": {"from": "p2", "to": "p3"},
     "e3": {"from": "p3", "to": "p1"}},
    {"e1": ["p1", "p2"], "e2": ["p2", "p3"], "e3": ["p3", "p9"]},
    {"e1": [1, 2], "e2": [2, 3], "e3": [3, 1]}, {"e1": ["p1", "p2", "p3"], "e2": ["p3"]},
    {"e1": ["p1", "p2"], "e2": ["p2", "p3"], "e3": ["p3", "p1"], "e4": ["p4", "p4"]},
]
BAD_COORDINATES: list[Any] = [
    {"x": math.nan, "y": 0.5}, {"x": math.inf, "y": 0.5}, {"x": 0.5, "y": -math.inf},
    {"x": "0.5", "y": 0.5}, {"x": True, "y": 0.5}, {"x": None, "y": 0.5}, {"x": 0.5},
    {"x": 3.0, "y": 0.5}, {"x": 0.5, "y": -1.5}, {"x": 10**400, "y": 0.5}, [0.5, 0.5], "p",
]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(3, 40), st.booleans(), st.booleans(), st.booleans(),
                          st.integers(0, 39)), min_size=0, max_size=40),
       st.randoms(use_true_random=False))
def test_rings_as_real_exports_write_them(
    specs: list[tuple[int, bool, bool, bool, int]], rnd: random.Random
) -> None:
    items = [ring_item(n, rnd, shuffle_points=sp, shuffle_edges=se, reverse=rv, start=s % n)
             for n, sp, se, rv, s in specs]
    same(fast(items), reference(items))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(3, 12), min_size=1, max_size=25),
       st.lists(st.sampled_from(range(len(BROKEN_EDGES))), max_size=5),
       st.randoms(use_true_random=False))
def test_broken_edges_take_the_per_shape_repairs(
    sizes: list[int], broken: list[int], rnd: random.Random
) -> None:
    items = [ring_item(n, rnd) for n in sizes]
    for which in broken:
        items[rnd.randrange(len(items))]["edges"] = BROKEN_EDGES[which]
    found, expected = fast(items), reference(items)
    same(found, expected)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(3, 12), min_size=1, max_size=20),
       st.sampled_from(range(len(BAD_COORDINATES))),
       st.sampled_from(["none", "label", "points", "too_many"]),
       st.randoms(use_true_random=False))
def test_a_bad_input_raises_the_same_first_error(
    sizes: list[int], bad: int, other: str, rnd: random.Random
) -> None:
    items = [ring_item(n, rnd) for n in sizes]
    where = rnd.randrange(len(items))
    name = rnd.choice(list(items[where]["points"]))
    items[where]["points"][name] = BAD_COORDINATES[bad]
    elsewhere = rnd.randrange(len(items))
    if other == "label":
        items[elsewhere]["label"] = ""
    elif other == "points":
        items[elsewhere]["points"] = [{"x": 0.1, "y": 0.2}] * 3
    elif other == "too_many":
        items[elsewhere]["points"] = {f"q{k}": {"x": 0.1, "y": 0.1}
                                      for k in range(LIMITS.max_points_per_shape + 1)}
    expected = reference(items)
    assert isinstance(expected, tuple) or other == "points"  # the case is really an error
    same(fast(items), expected)


def test_other_item_forms_match_the_reference() -> None:
    rnd = random.Random(7)
    cases: list[list[Any]] = [
        [ring_item(5, rnd), "not an object"],
        [ring_item(4, rnd), {"label": "c", "points": [{"x": 0.1, "y": 0.1}, {"x": 0.5, "y": 0.1},
                                                    {"x": 0.5, "y": 0.5}]}],
        [{"label": "c", "points": {}}],
        [{"label": "c", "points": {"p1": {"x": 0.1, "y": 0.1}, "p2": {"x": 0.2, "y": 0.2}},
          "edges": {"e1": ["p1", "p2"], "e2": ["p2", "p1"]}}],
        [ring_item(6, rnd, names="p0"), ring_item(6, rnd, names="P")],  # equal natural keys
        [{**ring_item(5, rnd), "color": "rgb(1,2,3)", "keyFrame": True, "surprise": 1}],
        [{**ring_item(5, rnd), "attributes": "bare"}],
        [ring_item(3, rnd, coordinate={"x": 2, "y": -1})],  # ints at the range's ends
        # Longer than the name tuples the caches keep: the same answers, uncached.
        [ring_item(LONGEST_KEY + 36, rnd),
         ring_item(LONGEST_KEY + 1, rnd, shuffle_points=True, shuffle_edges=True)],
    ]
    for items in cases:
        same(fast(items), reference(items))


def test_many_polygons_of_unique_names_are_walked_on_arrays() -> None:
    rnd = random.Random(3)
    items = [ring_item(n, rnd, names=f"u{i}_", shuffle_edges=True, start=i % n, reverse=i % 2 == 0)
             for i, n in enumerate([8] * 40 + [30] * 20)]
    walked, permutation = arrays._rings(*_ring_inputs(items))
    assert walked.all()  # the array walk did them, not the per-shape fallback
    same(fast(items), reference(items))
    assert len(permutation) == sum(len(i["points"]) for i in items)


def _ring_inputs(items: list[dict[str, Any]]) -> tuple[Any, ...]:
    import numpy as np

    names: list[str] = []
    pairs: list[Any] = []
    sizes, counts = [], []
    for item in items:
        names.extend(item["points"])
        sizes.append(len(item["points"]))
        edges = item["edges"]
        pairs.extend(edges[k] for k in sorted(edges, key=natural_key))
        counts.append(len(edges))
    size_array = np.array(sizes)
    starts = np.concatenate(([0], np.cumsum(size_array)[:-1]))
    return size_array, starts, names, pairs, np.array(counts)


@pytest.mark.parametrize("n", [3, 4, 24, LONGEST_KEY + 1])
def test_the_documented_layout_is_what_the_walk_finds(n: int) -> None:
    names = tuple(f"p{k}" for k in random.Random(n).sample(range(1, n + 1), n))
    layout = arrays._documented_ring(names)
    assert layout is not None
    edges, positions = layout
    ring = ring_from_edges(list(names), [tuple(e) for e in edges])  # type: ignore[misc]
    assert ring is not None
    expected = list(range(n)) if positions is None else positions.tolist()
    assert ring == [names[j] for j in expected]
