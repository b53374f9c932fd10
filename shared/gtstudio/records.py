"""The typed records a GT Studio export parses into; everything downstream reads these,
never raw export dicts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

from shared.errors import pointer_join

NO_POINTS = np.zeros((0, 2), dtype=np.float64)
NO_POINTS.flags.writeable = False


def as_coords(points: Iterable[tuple[float, float]]) -> np.ndarray:
    """An (n, 2) float64 array of normalised (x, y), read-only like the shape holding it."""
    found = np.array(list(points), dtype=np.float64).reshape(-1, 2)
    found.flags.writeable = False
    return found


@dataclass(frozen=True)
class Note:
    """Something the converter changed or could not keep; every one is reported."""

    action: str  # dropped | clipped | repaired | ignored | moved_to_extras
    reason: str
    pointer: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        out = {"action": self.action, "reason": self.reason, "pointer": self.pointer}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Shape:
    kind: str  # rectangle | polygon | line | landmark | cuboid
    label: str
    gt_id: str | None
    attributes: dict[str, Any]
    # Normalised (x, y) in drawing order, an (n, 2) float64 array: often a view of one
    # array holding every point of the job (gtstudio/arrays.py).  Not compared: `points`.
    coords: np.ndarray = field(compare=False, repr=False)
    pointer: str
    point_names: tuple[str, ...] = ()
    keypoint_ids: tuple[int, ...] = ()  # landmarks: the skeleton index of each point
    visibility: tuple[int, ...] = ()  # landmarks: COCO v per point
    edges: tuple[tuple[str, str], ...] = ()  # lines and landmarks (a skeleton)
    frame: str | None = None  # video frame id
    track_id: str | None = None
    raw: Any = None  # cuboids keep their undocumented geometry
    notes: tuple[Note, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # kept keys, as COCO fields
    unknown_keys: tuple[str, ...] = ()  # keys nobody documented: counted in the report

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """The coordinates as Python tuples (what the per-shape code paths read)."""
        return tuple((x, y) for x, y in self.coords.tolist())


_new, _set = object.__new__, object.__setattr__
# Every field with a default, as `shape_from` wants its state to start.
SHAPE_DEFAULTS = {f.name: f.default for f in fields(Shape) if f.default is not MISSING}


def shape_from(state: dict[str, Any]) -> Shape:
    """`Shape(**state)` for code that builds thousands: the frozen dataclass's `__init__`
    sets each of 17 fields through `object.__setattr__` (3 us a shape, measured); the
    shape takes `state` as its own dict instead (so the caller must not keep using it).
    `state` holds every field: `SHAPE_DEFAULTS` and the fields without a default."""
    shape = _new(Shape)
    _set(shape, "__dict__", state)
    return shape


@dataclass(frozen=True)
class RasterSpec:
    url: str | None
    legend: Any
    instances: Any
    pointer: str


@dataclass(frozen=True)
class Frame:
    frame_id: str
    src: str | None
    pointer: str = ""  # of the frame itself
    src_original: str | None = None
    width: int | None = None
    height: int | None = None

    def urls(self) -> list[tuple[str, str]]:
        """(url, pointer) to learn the frame's size from, in the order to try them."""
        return [
            (url, pointer_join(self.pointer, key))
            for url, key in ((self.src_original, "src_original"), (self.src, "src"))
            if url
        ]


@dataclass(frozen=True)
class Unsupported:
    type_name: str
    pointer: str
    raw: Any


@dataclass(frozen=True)
class Job:
    pointer: str
    reference_id: str | None
    image_url: str | None
    image_url_original: str | None
    width: int | None
    height: int | None
    shapes: tuple[Shape, ...] = ()
    raster: RasterSpec | None = None
    frames: tuple[Frame, ...] = ()
    unsupported: tuple[Unsupported, ...] = ()
    notes: tuple[Note, ...] = field(default_factory=tuple)

    @property
    def labels(self) -> list[str]:
        return sorted({s.label for s in self.shapes if s.kind not in {"line", "cuboid"}})
