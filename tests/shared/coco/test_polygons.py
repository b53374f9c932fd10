"""Polygons to pixels in bulk (`coco/polygons.py`) against the per-shape reference path of
`CocoBuilder._polygon`: the same annotations, notes, counts and errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.coco.builder import CocoBuilder, ImageSize, convert_vector_job
from shared.config import Limits, Options
from shared.errors import TooLargeError
from shared.geometry import round_coord, round_coords
from shared.gtstudio.records import Job, Note, Shape, as_coords


def _job(shapes: list[Shape], width: int, height: int) -> Job:
    return Job("", None, "http://h/i.jpg", None, width, height, shapes=tuple(shapes))


# What takes a polygon off the bulk path's plain runs, or breaks a run (a rectangle).
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "no attributes": {"attributes": {}},
    "reserved attribute": {"attributes": {"_id": 1, "bbox": 2, "b": 3}},
    "a note": {"notes": (Note("repaired", "edges_repaired", "/p", "x"),)},
    "kept key": {"extra": {"gt_color": [1, 2, 3]}},
    "track": {"track_id": "t1"},
    "unknown key": {"unknown_keys": ("zz",)},
    "rectangle": {"kind": "rectangle"},
}


def _shapes(rings: list[list[tuple[float, float]]], variants: list[str] | None = None) -> list[Shape]:
    kinds = variants or ["plain"] * len(rings)
    return [Shape(**{"kind": "polygon", "label": "c", "gt_id": f"g{i}", "attributes": {"a": i},
                     "coords": as_coords(ring), "pointer": f"/p/{i}", **VARIANTS[kind]})
            for i, (ring, kind) in enumerate(zip(rings, kinds, strict=False))]


def _outcome(job: Job, size: ImageSize, limits: Limits, bulk: bool) -> Any:
    try:
        if bulk:
            builder = convert_vector_job(job, size, {"c": 1}, Options(), "k", limits)
        else:  # the per-shape path: no bulk precomputation
            builder = CocoBuilder(job, size, {"c": 1}, Options(), "k", limits)
            for shape in job.shapes:
                builder.add_shape(shape)
        done = builder.finish()
    except TooLargeError as error:
        return error.code, error.pointer, str(error)
    return done.coco, [n.as_dict() for n in done.notes], done.counts


grid = st.integers(-40, 240).map(lambda v: v / 200)  # repeats, collinear points, clipping
free = st.floats(-0.3, 1.3, allow_nan=False)
point = st.tuples(st.one_of(grid, free), st.one_of(grid, free))


@st.composite
def rings_drawn(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Rings as exports write them: some closed (the first point again at the end), some
    with a point repeated, some points outside the image."""
    ring: list[tuple[float, float]] = draw(st.lists(point, min_size=0, max_size=30))
    closed: bool = draw(st.booleans())
    repeated: bool = draw(st.booleans())
    if ring and closed:
        ring.append(ring[0])
    if ring and repeated:
        at: int = draw(st.integers(0, len(ring) - 1))
        ring.insert(at, ring[at])
    return ring


# Found by hypothesis: the bulk walk (summed in another order) said 12469 pixels where the
# per-shape path says 12470.
_WALK_AT_HALF = [(0.0, 0.0), (0.7, 0.15210330954527662), (0.27, 0.9058672182071359),
                 (0.5, 0.88), (0.0, 0.13922321422556982), (0.0, 0.9189017306005611),
                 (0.0, 0.28), (0.0, 0.7259657725600219), (0.0, 0.0), (0.5, 0.0),
                 (0.5, 0.3565029163835482), (0.0073429633073816, 0.485),
                 (0.0, 0.4732915223592406), (0.0, 0.722998327970387), (0.5, 0.0),
                 (0.0, 0.145), (0.0, 0.0), (0.0, 0.96), (0.0, 0.43), (0.0, 0.985)]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@example([(_WALK_AT_HALF, "plain")], 585, 1285, 3000)
@given(st.lists(st.tuples(rings_drawn(), st.sampled_from(sorted(VARIANTS))), min_size=0,
                max_size=30),
       st.integers(1, 4000), st.integers(1, 4000), st.sampled_from([4_000_000, 3000, 200]))
def test_bulk_polygons_match_the_per_shape_path(
    drawn: list[tuple[list[tuple[float, float]], str]], width: int, height: int, work: int
) -> None:
    job = _job(_shapes([r for r, _ in drawn], [v for _, v in drawn]), width, height)
    size = ImageSize(width, height, "explicit")
    limits = Limits(max_raster_work=work)
    assert _outcome(job, size, limits, True) == _outcome(job, size, limits, False)


def test_more_polygons_than_one_area_call_takes() -> None:
    angles = np.linspace(0, 2 * math.pi, 13)[:-1]
    rings = [[(0.05 + (i % 30) / 32 + 0.01 * math.cos(a), 0.05 + (i // 30) / 24 + 0.01 * math.sin(a))
              for a in angles] for i in range(700)]
    job = _job(_shapes(rings), 1920, 1080)
    size = ImageSize(1920, 1080, "explicit")
    bulk = _outcome(job, size, Limits(), True)
    assert bulk == _outcome(job, size, Limits(), False)
    assert len(bulk[0]["annotations"]) == 700 and all(a["area"] > 0 for a in bulk[0]["annotations"])


halves = st.integers(-10**6, 10**6).map(lambda k: k / 100 + 0.005)  # exactly the hard cases
values = st.one_of(st.floats(-1e7, 1e7, allow_nan=False), halves,
                   st.integers(-10**8, 10**8).map(lambda k: k / 1000))


@given(st.lists(values, min_size=1, max_size=50))
def test_round_coords_is_round_coord_bit_for_bit(found: list[float]) -> None:
    rounded = round_coords(np.array(found)).tolist()
    expected = [round_coord(v) for v in found]
    assert [v.hex() for v in rounded] == [v.hex() for v in expected]
