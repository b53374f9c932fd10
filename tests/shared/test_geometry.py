from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.coco.builder import CocoBuilder, ImageSize
from shared.config import Limits, Options
from shared.geometry import bbox_of, natural_sorted, order_polygon, ring_from_edges
from shared.gtstudio.records import Job
from shared.gtstudio.shapes import parse_shape

coord = st.floats(min_value=-0.2, max_value=1.2, allow_nan=False)
point = st.tuples(coord, coord)
SIZE = ImageSize(640, 480, "explicit")


def _builder(job: Job) -> CocoBuilder:
    return CocoBuilder(job, SIZE, {"x": 1}, Options(), "k")


def _job() -> Job:
    return Job("", None, None, None, 640, 480)


def test_natural_sort_puts_p10_after_p9() -> None:
    assert natural_sorted(["p10", "p2", "p1", "p9"]) == ["p1", "p2", "p9", "p10"]


@given(st.lists(point, min_size=2, max_size=8), st.randoms())
def test_box_is_min_max_of_clipped_points_whatever_the_order(points: list[tuple[float, float]], rnd: random.Random) -> None:
    shuffled = list(points)
    rnd.shuffle(shuffled)
    item = {"label": "x", "coordinates": [{"x": x, "y": y} for x, y in shuffled]}
    builder = _builder(_job())
    builder.add_shape(parse_shape("rectangle", item, "/r", Limits()))
    clipped = [(min(max(x * 640, 0), 640), min(max(y * 480, 0), 480)) for x, y in points]
    x0, y0, w, h = bbox_of(clipped)
    if builder.annotations:
        box = builder.annotations[0]["bbox"]
        assert abs(box[0] - x0) < 0.01 and abs(box[1] - y0) < 0.01
        assert abs(box[2] - w) < 0.02 and abs(box[3] - h) < 0.02
        assert box[2] > 0 and box[3] > 0
    else:
        assert [n.reason for n in builder.notes if n.action == "dropped"] == ["zero_area"]


@given(st.integers(min_value=3, max_value=40), st.randoms())
def test_polygon_order_follows_edges(n: int, rnd: random.Random) -> None:
    names = [f"p{i}" for i in range(1, n + 1)]
    cycle = list(names)
    rnd.shuffle(cycle)
    edges = [(cycle[i], cycle[(i + 1) % n]) for i in range(n)]
    edges = [(b, a) if rnd.random() < 0.5 else (a, b) for a, b in edges]
    rnd.shuffle(edges)
    order, how = order_polygon(names, edges)
    assert how == "edges"
    assert sorted(order) == sorted(names)
    assert order[0] == "p1"
    # Same cycle up to direction: consecutive vertices are joined by an edge.
    pairs = {frozenset(e) for e in edges}
    assert all(frozenset((order[i], order[(i + 1) % n])) in pairs for i in range(n))


@given(st.integers(min_value=4, max_value=30), st.randoms())
def test_one_broken_edge_is_repaired_by_closing_the_chain(n: int, rnd: random.Random) -> None:
    names = [f"p{i}" for i in range(1, n + 1)]
    edges = [(names[i], names[i + 1]) for i in range(n - 1)] + [(names[-1], names[-1])]
    rnd.shuffle(edges)
    order, how = order_polygon(names, edges)
    assert how == "repaired_edges"
    assert order in (names, [names[0], *reversed(names[1:])])


def test_unusable_edges_fall_back_to_natural_order() -> None:
    names = ["p2", "p10", "p1", "p3"]
    order, how = order_polygon(names, [("p1", "p2"), ("p3", "p10")])
    assert (order, how) == (["p1", "p2", "p3", "p10"], "natural_order")
    assert ring_from_edges(names, []) is None


@settings(max_examples=200)
@given(st.lists(point, min_size=1, max_size=12))
def test_polygon_has_positive_area_or_is_reported_dropped(points: list[tuple[float, float]]) -> None:
    item = {"label": "x", "points": {f"p{i}": {"x": x, "y": y} for i, (x, y) in
                                     enumerate(points, start=1)}}
    builder = _builder(_job())
    builder.add_shape(parse_shape("polygon", item, "/p", Limits()))
    dropped = [n for n in builder.notes if n.action == "dropped"]
    if builder.annotations:
        ann = builder.annotations[0]
        assert ann["area"] > 0 and not dropped
        assert len(ann["segmentation"][0]) >= 6
    else:
        assert len(dropped) == 1 and dropped[0].reason in {"too_few_points", "zero_area"}


def test_randomised_keys_do_not_change_output() -> None:
    base = {f"p{i}": {"x": 0.1 * i, "y": 0.05 * (i % 3)} for i in range(1, 8)}
    edges = {f"e{i}": [f"p{i}", f"p{i % 7 + 1}"] for i in range(1, 8)}
    outputs = set()
    for seed in range(5):
        keys = list(base)
        random.Random(seed).shuffle(keys)
        item = {"label": "x", "points": {k: base[k] for k in keys}, "edges": edges}
        outputs.add(parse_shape("polygon", item, "", Limits()).points)
    assert len(outputs) == 1
