"""The typed records a GT Studio export parses into; everything downstream reads these,
never raw export dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import pointer_join


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
    points: tuple[tuple[float, float], ...]  # normalised, in drawing order
    pointer: str
    point_names: tuple[str, ...] = ()
    keypoint_ids: tuple[int, ...] = ()  # landmarks: the skeleton index of each point
    visibility: tuple[int, ...] = ()  # landmarks: COCO v per point
    edges: tuple[tuple[str, str], ...] = ()
    frame: str | None = None  # video frame id
    track_id: str | None = None
    raw: Any = None  # cuboids keep their undocumented geometry
    notes: tuple[Note, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # kept keys, as COCO fields
    unknown_keys: tuple[str, ...] = ()  # keys nobody documented: counted in the report


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
