"""Recognise GT Studio export shapes by content and parse them into typed records.

Every tolerated variation of gt-studio-format.md §2 lands here; nothing else in the
project looks at raw export dicts.  Structural errors raise `ConversionError` with the JSON
pointer of the offending value; geometric oddities become `Note`s for the report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .config import Limits
from .errors import ConversionError, TooLargeError, pointer_join
from .geometry import chain_from_edges, natural_sorted, order_polygon

# maker_response / annotations type keys and the shape each holds.
SHAPE_TYPES = {
    "rectangles": "rectangle",
    "polygons": "polygon",
    "lines": "line",
    "landmarks": "landmark",
    "cuboids": "cuboid",
}
# Singular `type` values seen on typed annotation lists (video trackers, API results).
TYPE_ALIASES = {
    **{v: v for v in SHAPE_TYPES.values()},
    **SHAPE_TYPES,
    "rect": "rectangle",
    "bbox": "rectangle",
    "box": "rectangle",
    "polyline": "line",
    "point": "landmark",
    "points": "landmark",
    "cuboid3d": "cuboid",
}
# Keys in maker_response that are not annotation lists of their own.
CONTAINER_KEYS = {"raster", "video2d"}
# Keys of an annotation the parser reads.
SHAPE_KEYS = frozenset(
    {"label", "_id", "id", "attributes", "coordinates", "points", "edges", "type", "frames"}
)
# Keys real exports carry that COCO users want: annotation field names they become.
KEPT_KEYS = {"color": "gt_color", "label_id": "gt_label_id", "keyFrame": "key_frame"}
# UI and QC bookkeeping of GT Studio, ignored on purpose (README: "Keys").
IGNORED_KEYS = frozenset(
    {
        "state",
        "comments",
        "labelEditable",
        "shapeEditable",
        "annotationQcEvals",
        "annotationQCEvaluations",
        "source",
        "grouping_config",
        "meta_data",
    }
)
_RGB = re.compile(r"^\s*rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,[^)]*)?\)\s*$")
_HEX = re.compile(r"^\s*#?([0-9a-fA-F]{6})\s*$")


def kept_value(key: str, value: Any) -> Any:
    """A kept key's value as COCO users want it: colours as [r, g, b]."""
    if key == "color" and isinstance(value, str):
        if m := _RGB.match(value):
            rgb = [int(g) for g in m.groups()]
            if all(c <= 255 for c in rgb):
                return rgb
        if m := _HEX.match(value):
            return [int(m[1][i : i + 2], 16) for i in (0, 2, 4)]
    if key == "label_id" and isinstance(value, (int, str)) and not isinstance(value, bool):
        return str(value)
    if key == "keyFrame" and isinstance(value, bool):
        return value
    return value if isinstance(value, (str, int, float, bool)) or value is None else None


def _kept_and_unknown(item: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    kept = {KEPT_KEYS[k]: kept_value(k, v) for k, v in item.items() if k in KEPT_KEYS}
    unknown = tuple(
        sorted(
            k for k in item if k not in SHAPE_KEYS and k not in KEPT_KEYS and k not in IGNORED_KEYS
        )
    )
    return {k: v for k, v in kept.items() if v is not None}, unknown


# Normalised coordinates slightly outside 0..1 are clipped; far outside is corrupt data.
COORD_MIN, COORD_MAX = -1.0, 2.0


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


# ---------------------------------------------------------------------------------------
# Batches and envelopes


def split_jobs(doc: Any, limits: Limits) -> list[tuple[str, Any]]:
    """Cut a document into (pointer, job) pairs: a JSON array, `export_data`, or one job."""
    if isinstance(doc, list):
        items = [(f"/{i}", item) for i, item in enumerate(doc)]
    elif isinstance(doc, dict) and isinstance(doc.get("export_data"), list):
        items = [
            (f"/export_data/{i}/data", item["data"])
            for i, item in enumerate(doc["export_data"])
            if isinstance(item, dict)
            and str(item.get("type", "JSON")).upper() == "JSON"
            and "data" in item
        ]
    else:
        return [("", doc)]
    if len(items) > limits.max_batch_jobs:
        raise TooLargeError(
            "too_many_jobs", f"{len(items)} jobs in one batch, limit {limits.max_batch_jobs}"
        )
    if not items:
        raise ConversionError("empty_batch", "the batch holds no jobs", "")
    return items


def is_bare_legend(doc: Any) -> bool:
    """The legend half of a raster export pair: `{"#rrggbb": label}` or `{legend, instances}`."""
    if not isinstance(doc, dict) or not doc:
        return False
    if "legend" in doc and "url" not in doc:
        return isinstance(doc["legend"], dict)
    from .legend import looks_like_color  # local: legend parsing lives with the raster code

    return all(looks_like_color(k) for k in doc)


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return None


def _dimension(doc: Mapping[str, Any], key: str, pointer: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConversionError(
            "invalid_type", f"{key} must be a positive integer", pointer_join(pointer, key)
        )
    if value <= 0 or value != int(value) or value > 1_000_000:
        raise ConversionError(
            "invalid_dimension",
            f"{key}={value} is not a usable image size",
            pointer_join(pointer, key),
        )
    return int(value)


def _url(doc: Mapping[str, Any], key: str, pointer: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConversionError("invalid_type", f"{key} must be a string", pointer_join(pointer, key))
    return value


def is_guide_coco(doc: Any) -> bool:
    """The COCO-like file GT Studio's own export guide writes: `images`, `annotations` and
    `category` (sic) or `categories`, with labels as `category_id` and string ids."""
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("images"), list)
        and isinstance(doc.get("annotations"), list)
        and ("category" in doc or "categories" in doc)
        and "maker_response" not in doc
    )


def _number_list(value: Any) -> list[float] | None:
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        return [float(v) for v in value]
    return None


def parse_guide_coco(doc: Mapping[str, Any], pointer: str, limits: Limits) -> Job:
    """Upgrade the guide's COCO-like file to a job: pixel coordinates back to normalised
    ones (the builder then gives int ids, `categories`, `area`, `iscrowd`, and each box from
    its polygon where there is one).  Its boxes without a polygon took the first corner the
    annotator drew as the top-left one; whether that was right cannot be known: noted."""
    iptr = pointer_join(pointer, "images")
    sizes: dict[str, tuple[int, int]] = {}
    for i, image in enumerate(doc["images"]):
        ptr = pointer_join(iptr, i)
        if not isinstance(image, dict) or _str_or_none(image.get("id")) is None:
            raise ConversionError("invalid_type", "an image needs an id", ptr)
        width, height = _dimension(image, "width", ptr), _dimension(image, "height", ptr)
        if not (width and height):
            raise ConversionError("image_size_unavailable", "an image needs width and height", ptr)
        sizes[str(image["id"])] = (width, height)
    if not sizes:
        raise ConversionError("invalid_type", "the file lists no image", iptr)
    names = _guide_category_names(doc)
    single = len(sizes) == 1
    shapes: list[Shape] = []
    notes = [Note("repaired", "guide_coco_upgraded", pointer, "GT Studio guide output read")]
    aptr = pointer_join(pointer, "annotations")
    for i, ann in enumerate(doc["annotations"]):
        ptr = pointer_join(aptr, i)
        if not isinstance(ann, dict):
            raise ConversionError("invalid_type", "an annotation must be a JSON object", ptr)
        image_id = _str_or_none(ann.get("image_id"))
        if image_id not in sizes:
            if not single:
                raise ConversionError(
                    "invalid_reference", "image_id names no image", pointer_join(ptr, "image_id")
                )
            image_id = next(iter(sizes))
        w, h = sizes[image_id]
        label = names.get(_str_or_none(ann.get("category_id")) or "", ann.get("category_id"))
        item: dict[str, Any] = {
            "label": label,
            "_id": ann.get("id"),
            "attributes": ann.get("attributes"),
        }
        segmentation = ann.get("segmentation")
        ring = (
            _number_list(segmentation[0])
            if isinstance(segmentation, list) and segmentation
            else None
        )
        if ring is not None and len(ring) >= 6 and len(ring) % 2 == 0:
            pts = [(ring[j] / w, ring[j + 1] / h) for j in range(0, len(ring), 2)]
            if len(pts) > 3 and pts[0] == pts[-1]:
                pts.pop()  # the guide closes its rings
            item["points"] = {f"p{j}": {"x": x, "y": y} for j, (x, y) in enumerate(pts, 1)}
            shape = parse_shape("polygon", item, ptr, limits)
        elif (box := _number_list(ann.get("bbox"))) is not None and len(box) == 4:
            x, y, bw, bh = box
            item["coordinates"] = [{"x": x / w, "y": y / h}, {"x": (x + bw) / w, "y": (y + bh) / h}]
            shape = parse_shape("rectangle", item, ptr, limits)
            notes.append(
                Note(
                    "unverified",
                    "guide_box_corner",
                    pointer_join(ptr, "bbox"),
                    "the guide took the first corner drawn as the top-left one; a box drawn "
                    "from another corner is shifted and cannot be recovered",
                )
            )
        else:
            raise ConversionError(
                "unknown_shape", "an annotation needs a segmentation polygon or a bbox", ptr
            )
        shapes.append(shape if single else replace(shape, frame=image_id))
    (first, (width, height)) = next(iter(sizes.items()))
    return Job(
        pointer=pointer,
        reference_id=first if single else None,
        image_url=None,
        image_url_original=None,
        width=width if single else None,
        height=height if single else None,
        shapes=tuple(shapes),
        frames=()
        if single
        else tuple(Frame(k, None, pointer, None, w, h) for k, (w, h) in sizes.items()),
        notes=tuple(notes),
    )


def _guide_category_names(doc: Mapping[str, Any]) -> dict[str, str]:
    """Category id -> name, where the file has a real category list; else labels are used."""
    listed = doc.get("categories", doc.get("category"))
    out: dict[str, str] = {}
    if isinstance(listed, list):
        for c in listed:
            if isinstance(c, dict) and isinstance(c.get("name"), str):
                key = _str_or_none(c.get("id"))
                if key is not None:
                    out[key] = c["name"]
    return out


def parse_job(doc: Any, pointer: str, limits: Limits) -> Job:
    """Parse one job in any documented shape (gt-studio-format.md §1)."""
    if not isinstance(doc, dict):
        raise ConversionError("invalid_type", "a job must be a JSON object", pointer)
    if is_guide_coco(doc):
        return parse_guide_coco(doc, pointer, limits)
    reference_id = _str_or_none(doc.get("reference_id"))
    meta = doc.get("meta")
    if isinstance(meta, dict):
        reference_id = _str_or_none(meta.get("reference_id")) or reference_id
    outer, outer_pointer = doc, pointer
    if isinstance(doc.get("build"), dict):  # export envelope {"build", "meta"}
        doc, pointer = doc["build"], pointer_join(pointer, "build")
    elif isinstance(doc.get("data"), dict) and not _has_payload(doc):  # API job result
        doc, pointer = doc["data"], pointer_join(pointer, "data")
    elif "build" in doc or ("data" in doc and not _has_payload(doc)):
        key = "build" if "build" in doc else "data"
        raise ConversionError(
            "invalid_type", f"{key} must be a JSON object", pointer_join(pointer, key)
        )
    reference_id = reference_id or _str_or_none(doc.get("reference_id"))

    def size_from(*candidates: tuple[Mapping[str, Any], str]) -> tuple[int | None, int | None]:
        for cand, ptr in candidates:
            w, h = _dimension(cand, "width", ptr), _dimension(cand, "height", ptr)
            if w and h:
                return w, h
        return None, None

    width, height = size_from((doc, pointer), (outer, outer_pointer))
    common = Job(
        pointer=pointer,
        reference_id=reference_id,
        image_url=_url(doc, "image_url", pointer),
        image_url_original=_url(doc, "image_url_original", pointer),
        width=width,
        height=height,
    )
    if isinstance(doc.get("maker_response"), dict):
        return _parse_container(
            doc["maker_response"],
            pointer_join(pointer, "maker_response"),
            doc,
            pointer,
            common,
            limits,
        )
    if "maker_response" in doc and doc["maker_response"] is not None:
        raise ConversionError(
            "invalid_type",
            "maker_response must be a JSON object",
            pointer_join(pointer, "maker_response"),
        )
    if "annotations" in doc:
        anns = doc["annotations"]
        ptr = pointer_join(pointer, "annotations")
        if isinstance(anns, list):
            shapes, unsupported, notes = _parse_typed_list(anns, ptr, limits)
            return replace(
                common, shapes=tuple(shapes), unsupported=tuple(unsupported), notes=tuple(notes)
            )
        if isinstance(anns, dict) or anns is None:
            return _parse_container(anns or {}, ptr, doc, pointer, common, limits)
        raise ConversionError("invalid_type", "annotations must be an object or a list", ptr)
    if "url" in doc and "legend" in doc:  # flat raster result
        return replace(
            common,
            raster=RasterSpec(
                _url(doc, "url", pointer), doc["legend"], doc.get("instances"), pointer
            ),
        )
    raise ConversionError(
        "unknown_shape",
        "not a GT Studio export: expected maker_response, annotations, build, data, or url+legend",
        pointer,
    )


def _has_payload(doc: Mapping[str, Any]) -> bool:
    return any(k in doc for k in ("maker_response", "annotations", "url"))


def _type_lists(container: Mapping[str, Any], pointer: str) -> Iterator[tuple[str, str, Any]]:
    """(type key, pointer, items) for each annotation list, `{"data": [...]}` or a bare list;
    an unknown type's `data` that is not a list (another job type, e.g. `sensor_fusion_v2`)
    is yielded as it is, for the caller to report."""
    known = [k for k in SHAPE_TYPES if k in container]
    for key in known + sorted(k for k in container if k not in SHAPE_TYPES):
        if key in CONTAINER_KEYS:
            continue
        value = container[key]
        ptr = pointer_join(pointer, key)
        if value is None:
            continue
        if isinstance(value, dict):
            if "data" not in value:
                continue
            value, ptr = value["data"], pointer_join(ptr, "data")
            if value is None:
                continue
        if not isinstance(value, list):
            if key in SHAPE_TYPES:
                raise ConversionError("invalid_type", f"{key} must hold a list", ptr)
            if isinstance(value, dict) and value:
                yield key, ptr, value
            continue
        yield key, ptr, value


def _parse_container(
    container: Mapping[str, Any],
    pointer: str,
    build: Mapping[str, Any],
    build_pointer: str,
    common: Job,
    limits: Limits,
) -> Job:
    shapes: list[Shape] = []
    unsupported: list[Unsupported] = []
    notes: list[Note] = []
    other_jobs: list[tuple[str, str, dict[str, Any]]] = []
    for key, ptr, items in _type_lists(container, pointer):
        if isinstance(items, dict):
            other_jobs.append((key, ptr, items))
            continue
        kind = SHAPE_TYPES.get(key)
        for i, item in enumerate(items):
            item_ptr = pointer_join(ptr, i)
            if kind is None:
                unsupported.append(Unsupported(key, item_ptr, item))
                notes.append(Note("moved_to_extras", "unsupported_type", item_ptr, key))
            else:
                shapes.append(parse_shape(kind, item, item_ptr, limits))
    raster = None
    raster_value = container.get("raster")
    if raster_value is not None:
        rptr = pointer_join(pointer, "raster")
        data = raster_value.get("data") if isinstance(raster_value, dict) else None
        if isinstance(data, dict):
            dptr = pointer_join(rptr, "data")
            if data.get("url") or data.get("legend"):
                raster = RasterSpec(
                    _url(data, "url", dptr), data.get("legend"), data.get("instances"), dptr
                )
        elif data is not None or not isinstance(raster_value, dict):
            raise ConversionError("invalid_type", "raster.data must be a JSON object", rptr)
    frames: list[Frame] = []
    video = container.get("video2d")
    if video is not None:
        vptr = pointer_join(pointer, "video2d")
        frames = _parse_frames(build, build_pointer)
        data = video.get("data") if isinstance(video, dict) else None
        trackers = data.get("annotations") if isinstance(data, dict) else None
        if trackers is not None and not isinstance(trackers, list):
            raise ConversionError(
                "invalid_type",
                "video2d.data.annotations must be a list",
                pointer_join(vptr, "data", "annotations"),
            )
        for i, tracker in enumerate(trackers or []):
            shapes.extend(
                _parse_tracker(tracker, pointer_join(vptr, "data", "annotations", i), limits)
            )
    # Job types gtcoco cannot turn into COCO (camera + LIDAR `sensor_fusion_v2`, ...): an
    # error when they are all the job holds, else kept in extras and noted with counts.
    described = [(key, ptr, data, _describe_job_type(key, data)) for key, ptr, data in other_jobs]
    if described and not (shapes or unsupported or raster is not None or video is not None):
        raise ConversionError(
            "unsupported_job_type",
            "; ".join(d[3] for d in described) + ": not a job type gtcoco can convert",
            described[0][1],
        )
    for key, ptr, data, what in described:
        unsupported.append(Unsupported(key, ptr, data))
        notes.append(Note("moved_to_extras", "unsupported_job_type", ptr, what))
    return replace(
        common,
        shapes=tuple(shapes),
        raster=raster,
        frames=tuple(frames),
        unsupported=tuple(unsupported),
        notes=tuple(notes),
    )


def _describe_job_type(key: str, data: Mapping[str, Any]) -> str:
    counts = ", ".join(
        f"{len(v)} {k}" for k, v in sorted(data.items()) if isinstance(v, (list, dict))
    )
    return f"maker_response.{key} ({counts or 'no lists'})"


def _parse_frames(build: Mapping[str, Any], pointer: str) -> list[Frame]:
    video_data = build.get("video_data")
    ptr = pointer_join(pointer, "video_data", "frames")
    frames = video_data.get("frames") if isinstance(video_data, dict) else None
    if not isinstance(frames, list):
        raise ConversionError("invalid_type", "a video build needs video_data.frames", ptr)
    out = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or _str_or_none(frame.get("frame_id")) is None:
            raise ConversionError("invalid_type", "a frame needs a frame_id", pointer_join(ptr, i))
        fptr = pointer_join(ptr, i)
        width, height = _dimension(frame, "width", fptr), _dimension(frame, "height", fptr)
        out.append(
            Frame(
                str(frame["frame_id"]),
                _url(frame, "src", fptr),
                fptr,
                _url(frame, "src_original", fptr),
                width if width and height else None,
                height if width and height else None,
            )
        )
    return out


def _parse_tracker(tracker: Any, pointer: str, limits: Limits) -> list[Shape]:
    if not isinstance(tracker, dict):
        raise ConversionError("invalid_type", "a tracker must be a JSON object", pointer)
    kind = TYPE_ALIASES.get(str(tracker.get("type", "")).lower())
    if kind is None:
        raise ConversionError(
            "unknown_shape",
            f"unknown tracker type {tracker.get('type')!r}",
            pointer_join(pointer, "type"),
        )
    track_id = _str_or_none(tracker.get("_id", tracker.get("id")))
    frames = tracker.get("frames")
    fptr = pointer_join(pointer, "frames")
    if not isinstance(frames, dict):
        raise ConversionError("invalid_type", "tracker frames must be an object", fptr)
    shapes: list[Shape] = []
    for frame_id in natural_sorted(list(frames)):
        ann = frames[frame_id]
        if not isinstance(ann, dict):
            raise ConversionError(
                "invalid_type",
                "a frame annotation must be a JSON object",
                pointer_join(fptr, frame_id),
            )
        inherited = {k: tracker[k] for k in ("color", "label_id") if k in tracker}
        merged = {
            "label": tracker.get("label"),
            "attributes": tracker.get("attributes"),
            **inherited,
            **ann,
        }
        shape = parse_shape(kind, merged, pointer_join(fptr, frame_id), limits)
        if not shapes:  # the tracker's own unknown keys, counted once
            _, tracker_unknown = _kept_and_unknown(tracker)
            shape = replace(
                shape, unknown_keys=tuple(sorted({*shape.unknown_keys, *tracker_unknown}))
            )
        shapes.append(replace(shape, frame=frame_id, track_id=track_id))
    return shapes


def _parse_typed_list(
    items: list[Any], pointer: str, limits: Limits
) -> tuple[list[Shape], list[Unsupported], list[Note]]:
    shapes, unsupported, notes = [], [], []
    for i, item in enumerate(items):
        ptr = pointer_join(pointer, i)
        if not isinstance(item, dict):
            raise ConversionError("invalid_type", "an annotation must be a JSON object", ptr)
        kind = TYPE_ALIASES.get(str(item.get("type", "")).lower())
        if kind is None:
            unsupported.append(Unsupported(str(item.get("type")), ptr, item))
            notes.append(Note("moved_to_extras", "unsupported_type", ptr, str(item.get("type"))))
            continue
        shapes.append(parse_shape(kind, item, ptr, limits))
    return shapes, unsupported, notes


# ---------------------------------------------------------------------------------------
# Single annotations


def parse_shape(kind: str, item: Any, pointer: str, limits: Limits) -> Shape:
    if not isinstance(item, dict):
        raise ConversionError("invalid_type", "an annotation must be a JSON object", pointer)
    label = item.get("label")
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str) or not label.strip():
        raise ConversionError(
            "invalid_label", "label must be a non-empty string", pointer_join(pointer, "label")
        )
    if len(label.strip()) > limits.max_label_chars:
        raise TooLargeError(
            "label_too_long",
            f"label is {len(label.strip())} characters, limit {limits.max_label_chars}",
            pointer_join(pointer, "label"),
        )
    gt_id = _str_or_none(item.get("_id", item.get("id")))
    attributes, attr_note = normalise_attributes(
        item.get("attributes"), pointer_join(pointer, "attributes")
    )
    base = Shape(
        kind=kind,
        label=label.strip(),
        gt_id=gt_id,
        attributes=attributes,
        points=(),
        pointer=pointer,
    )
    notes = [attr_note] if attr_note else []
    extra, unknown = _kept_and_unknown(item)
    base = replace(base, extra=extra, unknown_keys=unknown if kind != "cuboid" else ())
    if kind == "rectangle":
        points = _point_list(item, "coordinates", pointer, limits)
        return replace(base, points=tuple(p for _, p in points), notes=tuple(notes))
    if kind == "cuboid":
        found = _collect_points(item, pointer, limits)
        raw = {k: v for k, v in item.items() if k not in {"attributes", "label", "_id", "id"}}
        return replace(base, points=tuple(found), raw=raw, notes=tuple(notes))
    named = _point_list(item, "points", pointer, limits)
    names = [n for n, _ in named]
    coords = dict(named)
    edges = _edges(item.get("edges"), pointer_join(pointer, "edges"), notes)
    if kind in {"polygon", "line"}:
        if kind == "polygon":
            order, how = order_polygon(names, edges)
            broken = how != "edges" and (bool(edges) or item.get("edges") is not None)
            reason, shape_word = f"polygon_{how}", "ring"
        else:
            chain = chain_from_edges(names, edges) if edges else None
            order = chain or natural_sorted(names)
            broken = bool(edges) and chain is None
            reason, shape_word = "line_natural_order", "chain"
        if broken:
            notes.append(
                Note(
                    "repaired",
                    reason,
                    pointer_join(pointer, "edges"),
                    f"edges do not form one {shape_word}",
                )
            )
        return replace(
            base,
            points=tuple(coords[n] for n in order),
            point_names=tuple(order),
            edges=tuple(edges),
            notes=tuple(notes),
        )
    # landmark
    order = natural_sorted(names)
    raw_points: Any = item.get("points")  # validated by _point_list above
    ids, vis = [], []
    for position, name in enumerate(order, start=1):
        spec = raw_points[name] if isinstance(raw_points, dict) else raw_points[int(name)]
        ids.append(_keypoint_id(spec.get("label"), position, pointer_join(pointer, "points", name)))
        vis.append(_visibility(spec))
    if len(set(ids)) != len(ids):
        raise ConversionError(
            "invalid_landmark", "two points name the same keypoint", pointer_join(pointer, "points")
        )
    return replace(
        base,
        points=tuple(coords[n] for n in order),
        point_names=tuple(order),
        keypoint_ids=tuple(ids),
        visibility=tuple(vis),
        edges=tuple(edges),
        notes=tuple(notes),
    )


def _keypoint_id(value: Any, fallback: int, pointer: str) -> int:
    if value is None:
        return fallback
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        if isinstance(value, float) and value.is_integer() and 1 <= value <= 1000:
            return int(value)
        raise ConversionError(
            "invalid_landmark",
            "a landmark point label must be an integer 1..1000",
            pointer_join(pointer, "label"),
        )
    return value


def _visibility(spec: Mapping[str, Any]) -> int:
    """COCO v: 2 visible, 1 labelled but occluded (GT Studio keeps this in flags)."""
    if spec.get("visible") is False or spec.get("occluded") is True:
        return 1
    return 2


def normalise_attributes(raw: Any, pointer: str) -> tuple[dict[str, Any], Note | None]:
    """`{name: {"value": v}}`, `{name: v}`, `[{name, value}]`, `[]`, null -> `{name: v}`."""
    if raw is None or raw == [] or raw == {}:
        return {}, None
    if isinstance(raw, dict):
        return {
            str(k): _clean(v["value"] if isinstance(v, dict) and "value" in v else v)
            for k, v in raw.items()
        }, None
    if isinstance(raw, list) and all(isinstance(a, dict) and "name" in a for a in raw):
        return {str(a["name"]): _clean(a.get("value")) for a in raw}, None
    return {"value": _clean(raw)}, Note(
        "repaired",
        "attributes_bare_value",
        pointer,
        "attributes were not an object; kept under 'value'",
    )


def _clean(value: Any) -> Any:
    """Attribute values are kept verbatim, except numbers JSON cannot hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return value


_NUMBER = (float, int)  # exact types: bool is an int subclass and must not pass


def _coordinate(spec: Any, pointer: str, name: str | None = None) -> tuple[float, float]:
    """A validated `(x, y)`; the point's pointer is `pointer/name`, built only on error
    because this runs once per vertex."""
    x: Any = spec.get("x") if isinstance(spec, dict) else None
    y: Any = spec.get("y") if isinstance(spec, dict) else None
    if (
        type(x) in _NUMBER
        and type(y) in _NUMBER
        and COORD_MIN <= x <= COORD_MAX  # NaN fails here and takes the slow path
        and COORD_MIN <= y <= COORD_MAX
    ):
        return float(x), float(y)
    ptr = pointer if name is None else pointer_join(pointer, name)
    if not isinstance(spec, dict):
        raise ConversionError("invalid_type", "a point must be an object with x and y", ptr)
    out = []
    for axis in ("x", "y"):
        value = spec.get(axis)
        axis_ptr = pointer_join(ptr, axis)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConversionError("invalid_coordinate", f"{axis} must be a number", axis_ptr)
        if not math.isfinite(value):
            raise ConversionError("invalid_coordinate", f"{axis} is {value}", axis_ptr)
        if not COORD_MIN <= value <= COORD_MAX:
            raise ConversionError(
                "coordinate_out_of_range",
                f"{axis}={value} is far outside the normalised 0..1 range",
                axis_ptr,
            )
        out.append(float(value))
    return out[0], out[1]


def _point_list(
    item: Mapping[str, Any], key: str, pointer: str, limits: Limits
) -> list[tuple[str, tuple[float, float]]]:
    """Named points from `{"p1": {x, y}}` or a list of `{x, y}`."""
    raw = item.get(key)
    ptr = pointer_join(pointer, key)
    if raw is None:
        raise ConversionError("invalid_type", f"{key} is missing", ptr)
    if isinstance(raw, dict):
        entries = list(raw.items())
    elif isinstance(raw, list):
        entries = [(str(i), v) for i, v in enumerate(raw)]
    else:
        raise ConversionError("invalid_type", f"{key} must be an object or a list", ptr)
    if len(entries) > limits.max_points_per_shape:
        raise TooLargeError(
            "too_many_points",
            f"{len(entries)} points in one shape, limit {limits.max_points_per_shape}",
            ptr,
        )
    return [(str(name), _coordinate(spec, ptr, str(name))) for name, spec in entries]


def _collect_points(item: Any, pointer: str, limits: Limits) -> list[tuple[float, float]]:
    """Every `{x, y}` anywhere inside a cuboid, in document order (its layout is undocumented)."""
    found: list[tuple[float, float]] = []
    stack: list[tuple[Any, str]] = [(item, pointer)]
    while stack:
        node, ptr = stack.pop()
        if isinstance(node, dict):
            if "x" in node and "y" in node:
                found.append(_coordinate(node, ptr))
                continue
            for k in sorted(node, reverse=True):
                if k != "attributes":
                    stack.append((node[k], pointer_join(ptr, k)))
        elif isinstance(node, list):
            stack.extend((v, pointer_join(ptr, i)) for i, v in reversed(list(enumerate(node))))
        if len(found) > limits.max_points_per_shape:
            raise TooLargeError("too_many_points", "too many points in one cuboid", pointer)
    return found


def _edges(raw: Any, pointer: str, notes: list[Note]) -> list[tuple[str, str]]:
    """`{"e1": ["p1", "p2"]}` or a list of pairs, in natural key order; junk is reported."""
    if raw is None or raw == {} or raw == []:
        return []
    if isinstance(raw, dict):
        entries = [(k, raw[k]) for k in natural_sorted(list(raw))]
    elif isinstance(raw, list):
        entries = [(str(i), v) for i, v in enumerate(raw)]
    else:
        notes.append(Note("ignored", "edges_invalid", pointer, "edges must be an object"))
        return []
    edges = []
    for name, pair in entries:
        if isinstance(pair, dict):
            pair = [pair.get("from", pair.get("start")), pair.get("to", pair.get("end"))]
        if (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], (str, int))
            and isinstance(pair[1], (str, int))
        ):
            edges.append((str(pair[0]), str(pair[1])))
        else:
            notes.append(
                Note(
                    "ignored",
                    "edge_invalid",
                    pointer_join(pointer, name),
                    "an edge must be a pair of point names",
                )
            )
    return edges
