"""Typed GT Studio records -> COCO dicts: ids, boxes, areas, keypoints, extras.

Pure: no IO.  Areas come from pycocotools itself so that `area` always equals what
COCO evaluation computes for the segmentation.
"""

from __future__ import annotations

import math
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from pycocotools import mask as mask_utils

from shared import RELEASE_YEAR, __version__
from shared.coco.polygons import PixelPolygon, PixelPolygons, pixel_polygons, ring_walk
from shared.config import Limits, Options
from shared.errors import TooLargeError, pointer_join
from shared.geometry import bbox_of, clip_point, round_coord
from shared.gtstudio.records import Frame, Job, Note, Shape
from shared.memo import short_key_cache

Pixel = tuple[float, float]


@dataclass(frozen=True)
class ImageSize:
    width: int
    height: int
    source: str  # explicit | mask | header
    url: str | None = None  # the URL whose header gave it


@dataclass
class Converted:
    coco: dict[str, Any]
    extras: dict[str, Any]
    counts: dict[str, int]
    notes: list[Note] = field(default_factory=list)
    ignored_keys: dict[str, int] = field(default_factory=dict)


def file_name_for(job: Job, fallback: str) -> str:
    """The image's file name: the URL's last path segment, else the reference id."""
    for url in (job.image_url_original, job.image_url):
        if url:
            name = posixpath.basename(urlsplit(url).path)
            if name:
                return name
    return (job.reference_id or fallback).rsplit("/", 1)[-1]


def info_block() -> dict[str, Any]:
    # No date fields: outputs must be byte-identical across runs (SPEC §3).
    return {
        "description": "Converted from a GT Studio export by gtcoco",
        "version": __version__,
        "contributor": "",
        "url": "",
        "year": RELEASE_YEAR,
    }


# Attribute names that readers take for annotation fields: FiftyOne's COCO importer spreads
# `attributes` over the annotation and passes every key to its label classes, so one of
# these names overwrites a COCO field or raises TypeError.  Such attributes keep their name
# and value under `reserved_attributes`, which FiftyOne passes as one field.
RESERVED_ATTRIBUTE_NAMES = frozenset(
    {
        # COCO's annotation fields and ours
        "id",
        "image_id",
        "category_id",
        "bbox",
        "segmentation",
        "area",
        "iscrowd",
        "keypoints",
        "num_keypoints",
        "score",
        "attributes",
        "reserved_attributes",
        "gt_id",
        "track_id",
        "box_only",
        "gt_color",
        "gt_label_id",
        "key_frame",
        # FiftyOne's label fields
        "label",
        "confidence",
        "index",
        "mask",
        "mask_path",
        "bounding_box",
        "points",
        "closed",
        "filled",
        "visible",
        "tags",
        "instance",
    }
)


def split_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """`attributes` plus, for names a reader reserves (or that start with `_`, which
    document stores reserve), `reserved_attributes`."""
    if not attributes or _no_reserved(tuple(attributes)):
        return {"attributes": dict(attributes)}
    kept = {k: v for k, v in attributes.items() if not _reserved(k)}
    out: dict[str, Any] = {"attributes": kept}
    moved = {k: v for k, v in attributes.items() if _reserved(k)}
    if moved:
        out["reserved_attributes"] = moved
    return out


@short_key_cache(maxsize=1024)  # every annotation of a job has the same few names
def _no_reserved(names: tuple[str, ...]) -> bool:
    return not any(_reserved(name) for name in names)


def _reserved(name: str) -> bool:
    return name in RESERVED_ATTRIBUTE_NAMES or name.startswith("_")


def box_polygon(box: Sequence[float]) -> list[list[float]]:
    """A box as the 4-corner polygon COCO readers rasterise: every annotation has a
    segmentation, so mask readers and segm evaluation accept box-only shapes."""
    x, y, w, h = box
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def at_least_a_pixel(box: Sequence[float], width: int, height: int) -> list[float]:
    """A box of at least one pixel each way, kept inside the image: one point or collinear
    points still give a box that evaluation can match (IoU of a zero-area box is 0)."""
    x, y, w, h = box
    if w < 1:
        x = min(max(0.0, x + w / 2 - 0.5), max(0.0, width - 1.0))
        w = float(min(1, width))
    if h < 1:
        y = min(max(0.0, y + h / 2 - 0.5), max(0.0, height - 1.0))
        h = float(min(1, height))
    return [round_coord(x), round_coord(y), round_coord(w), round_coord(h)]


def category_entries(
    used: Mapping[str, int], keypoints: Mapping[str, tuple[list[str], list[list[int]]]]
) -> list[dict[str, Any]]:
    out = []
    for label, cid in sorted(used.items(), key=lambda kv: kv[1]):
        entry: dict[str, Any] = {"id": cid, "name": label, "supercategory": ""}
        if label in keypoints:
            entry["keypoints"], entry["skeleton"] = keypoints[label]
        out.append(entry)
    return out


def _to_pixels(shape: Shape, size: ImageSize) -> tuple[list[Pixel], int]:
    """Normalised -> pixel coordinates clipped to the image, and how many points moved."""
    w, h = size.width, size.height
    pixels = [(x * w, y * h) for x, y in shape.points]
    clipped = sum(1 for x, y in pixels if not (0.0 <= x <= w and 0.0 <= y <= h))
    if clipped:  # rare: clamp only when some point lies outside
        pixels = [clip_point(x, y, w, h)[0] for x, y in pixels]
    return [(round_coord(x), round_coord(y)) for x, y in pixels], clipped


# pycocotools indexes the frame in 32 bits: on a larger one it corrupts memory.
FRAME_LIMIT = 2**31 - 1


def polygon_area(
    flat: Sequence[float],
    width: int,
    height: int,
    limits: Limits,
    pointer: str,
    frame_limit: int = FRAME_LIMIT,
) -> float:
    """The pixel area pycocotools gives the polygon on a `width` x `height` frame, bounded
    whatever the export declares.  pycocotools walks every edge pixel by pixel (at 5x), so
    the walk is capped; its cost does not depend on the frame's area, but its indexes do: on
    a frame past `frame_limit` the polygon is rasterised in its own bounding box instead
    (shifted by whole pixels: the same area up to the rounding of the shifted coordinates,
    about a pixel per vertex; no exact reference exists there, pycocotools cannot run)."""
    ring = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    steps = ring_walk(flat)
    if steps > limits.max_raster_work:
        raise TooLargeError(
            "shape_too_complex",
            f"the outline walks {steps:.0f} pixels, limit {limits.max_raster_work} "
            "(GTCOCO_MAX_RASTER_WORK)",
            pointer_join(pointer, "points"),
        )
    coords = list(flat)
    if width * height > frame_limit:
        ox = max(0, math.floor(float(ring[:, 0].min())))
        oy = max(0, math.floor(float(ring[:, 1].min())))
        box_w = max(1, min(width - ox, math.ceil(float(ring[:, 0].max())) - ox + 1))
        box_h = max(1, min(height - oy, math.ceil(float(ring[:, 1].max())) - oy + 1))
        if box_w * box_h > frame_limit:
            raise TooLargeError(
                "shape_too_large",
                f"the polygon spans {box_w}x{box_h} = {box_w * box_h} pixels, more than "
                f"the {frame_limit} pycocotools can index",
                pointer,
            )
        coords = (ring - (ox, oy)).ravel().tolist()
        width, height = box_w, box_h
    rles = mask_utils.frPyObjects([coords], height, width)
    return float(mask_utils.area(mask_utils.merge(rles)))


class CocoBuilder:
    """Accumulates annotations for one job; ids are assigned in input order (deterministic)."""

    def __init__(
        self,
        job: Job,
        size: ImageSize,
        category_ids: Mapping[str, int],
        options: Options,
        key: str,
        limits: Limits | None = None,
        frame_sizes: Mapping[str, ImageSize] | None = None,
    ) -> None:
        self.job, self.size, self.ids, self.options = job, size, category_ids, options
        self.frame_sizes: Mapping[str, ImageSize] = frame_sizes or {}
        self.limits = limits or Limits()
        self.annotations: list[dict[str, Any]] = []
        self.used: dict[str, int] = {}
        self.keypoints: dict[str, tuple[list[str], list[list[int]]]] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        self.notes: list[Note] = list(job.notes)
        self.counts: Counter[str] = Counter()
        self.ignored_keys: Counter[str] = Counter()
        self.images = self._images(key)
        self.pixels: dict[int, PixelPolygon] = {}  # id(shape): its polygon, done in bulk

    def add_shapes(self, shapes: Sequence[Shape]) -> None:
        """`add_shape` of each, in order.  Every polygon's pixels, box and area are found
        at once (`coco/polygons.py`), and a run of plain ones (nothing to note, no frame,
        track, kept key or reserved attribute name) becomes annotations in one pass."""
        bulk, plain = self._prepare(shapes)
        start = 0
        for i, shape in enumerate(shapes):
            if plain[i] < 0:
                if start < i:
                    self._plain_polygons(bulk, shapes[start:i], plain[start:i])
                start = i + 1
                self.add_shape(shape)
        if start < len(shapes):
            self._plain_polygons(bulk, shapes[start:], plain[start:])

    def _prepare(self, shapes: Sequence[Shape]) -> tuple[PixelPolygons, list[int]]:
        """The polygons' pixels in bulk (a frame too large for pycocotools' indexes stays on
        the per-shape path); and for each shape, its row of those columns if it is a plain
        polygon, else -1 (its bulk outcome, if any, is in `self.pixels`)."""
        chosen = [
            (i, s, z)
            for i, s in enumerate(shapes)
            if s.kind == "polygon" and (z := self._size(s)).width * z.height <= FRAME_LIMIT
        ]
        found = pixel_polygons(
            [s.coords for _, s, _ in chosen],
            [(z.width, z.height) for _, _, z in chosen],
            self.limits,
            [s.pointer for _, s, _ in chosen],
        )
        plain = [-1] * len(shapes)
        failed, clipped = found.failed, found.clipped
        for row, (i, shape, _) in enumerate(chosen):
            if (
                row in failed
                or clipped[row]
                or shape.notes
                or shape.unknown_keys
                or shape.extra
                or shape.frame is not None
                or shape.track_id is not None
                or (shape.attributes and not _no_reserved(tuple(shape.attributes)))
            ):
                self.pixels[id(shape)] = found.outcome(row)
            else:
                plain[i] = row
        return found, plain

    def _plain_polygons(
        self, bulk: PixelPolygons, shapes: Sequence[Shape], rows: Sequence[int]
    ) -> None:
        """`_polygon_from` of plain polygons: the same annotations, keys in the same order."""
        ids = self.ids
        flat, area, bbox = bulk.flat, bulk.area, bulk.bbox
        for label in dict.fromkeys(s.label for s in shapes):
            self.used[label] = ids[label]
        first = len(self.annotations) + 1
        self.annotations.extend(
            {
                "id": n,
                "image_id": 1,
                "category_id": ids[s.label],
                "iscrowd": 0,
                "attributes": dict(s.attributes),
                "gt_id": s.gt_id,
                "bbox": bbox[row],
                "area": area[row],
                "segmentation": [flat[row]],
            }
            for n, s, row in zip(range(first, first + len(shapes)), shapes, rows, strict=True)
        )
        self.counts["input_polygons"] += len(shapes)
        self.counts["polygons"] += len(shapes)

    def _images(self, key: str) -> list[dict[str, Any]]:
        base = {
            "width": self.size.width,
            "height": self.size.height,
            "reference_id": self.job.reference_id,
            "image_url": self.job.image_url_original or self.job.image_url,
        }
        if self.job.frames:
            return [
                {
                    **base,
                    "width": self.frame_sizes.get(f.frame_id, self.size).width,
                    "height": self.frame_sizes.get(f.frame_id, self.size).height,
                    "id": i,
                    "frame_id": f.frame_id,
                    "image_url": self._frame_url(f),
                    "file_name": posixpath.basename(urlsplit(self._frame_url(f) or "").path)
                    or f"{f.frame_id}.jpg",
                }
                for i, f in enumerate(self.job.frames, start=1)
            ]
        return [{**base, "id": 1, "file_name": file_name_for(self.job, key)}]

    def _frame_url(self, frame: Frame) -> str | None:
        """The frame's URL that answered, else the one a reader would try first."""
        known = self.frame_sizes.get(frame.frame_id)
        return (known.url if known else None) or frame.src_original or frame.src

    def _size(self, shape: Shape) -> ImageSize:
        """The size of the image the shape is on: its frame's own, else the job's."""
        if shape.frame is not None and shape.frame in self.frame_sizes:
            return self.frame_sizes[shape.frame]
        return self.size

    def _image_id(self, shape: Shape) -> int:
        if shape.frame is None:
            return 1
        for image in self.images:
            if image.get("frame_id") == shape.frame:
                return int(image["id"])
        return 1

    def next_id(self) -> int:
        return len(self.annotations) + 1

    def add_annotation(self, label: str, fields: dict[str, Any]) -> dict[str, Any]:
        cid = self.ids[label]
        self.used[label] = cid
        ann = {"id": self.next_id(), "image_id": 1, "category_id": cid, "iscrowd": 0, **fields}
        self.annotations.append(ann)
        return ann

    _HANDLERS = {
        "rectangle": "_rectangle",
        "polygon": "_polygon",
        "landmark": "_landmark",
        "line": "_extra",
        "cuboid": "_extra",
    }
    _INPUT_COUNTS = {kind: f"input_{kind}s" for kind in _HANDLERS}

    def add_shape(self, shape: Shape) -> None:
        self.counts[self._INPUT_COUNTS[shape.kind]] += 1
        if shape.unknown_keys:  # Counter.update runs in Python even on nothing
            self.ignored_keys.update(shape.unknown_keys)
        self.notes.extend(shape.notes)
        getattr(self, self._HANDLERS[shape.kind])(shape)

    def _common(self, shape: Shape) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image_id": self._image_id(shape),
            **split_attributes(shape.attributes),
            "gt_id": shape.gt_id,
        }
        if shape.track_id is not None:
            out["track_id"] = shape.track_id
        out.update(shape.extra)
        return out

    def _note_clipped(self, shape: Shape, clipped: int) -> None:
        if clipped:
            self.counts["clipped_points"] += clipped
            self.notes.append(
                Note(
                    "clipped",
                    "outside_image",
                    shape.pointer,
                    f"{clipped} point(s) clamped to the image",
                )
            )

    def _drop(self, shape: Shape, reason: str, detail: str) -> None:
        self.counts["dropped"] += 1
        self.notes.append(Note("dropped", reason, shape.pointer, detail))

    def _rectangle(self, shape: Shape) -> None:
        size = self._size(shape)
        pts, clipped = _to_pixels(shape, size)
        if len(pts) < 2:
            return self._drop(shape, "too_few_points", f"{len(pts)} corner(s)")
        box = [round_coord(v) for v in bbox_of(pts)]
        if box[2] <= 0 or box[3] <= 0:
            return self._drop(shape, "zero_area", f"box {box} has no area inside the image")
        self._note_clipped(shape, clipped)
        segmentation = box_polygon(box)
        extra: dict[str, Any] = {}
        if self.options.rect_as_polygon:
            area = polygon_area(
                segmentation[0], size.width, size.height, self.limits, shape.pointer
            )
        else:
            area, extra = round_coord(box[2] * box[3]), {"box_only": True}
        self.add_annotation(
            shape.label,
            {
                **self._common(shape),
                "bbox": box,
                "area": area,
                "segmentation": segmentation,
                **extra,
            },
        )
        self.counts["rectangles"] += 1

    def _polygon(self, shape: Shape) -> None:
        done = self.pixels.pop(id(shape), None)
        if done is not None:
            return self._polygon_from(shape, done)
        size = self._size(shape)
        pts, clipped = _to_pixels(shape, size)
        ring = [p for i, p in enumerate(pts) if i == 0 or p != pts[i - 1]]
        if len(ring) > 1 and ring[0] == ring[-1]:
            ring.pop()
        if len(set(ring)) < 3:
            return self._drop(
                shape, "too_few_points", f"{len(set(ring))} distinct point(s) after clipping"
            )
        flat = [c for p in ring for c in p]
        area = polygon_area(flat, size.width, size.height, self.limits, shape.pointer)
        if area <= 0:
            return self._drop(shape, "zero_area", "the polygon covers no pixel")
        self._note_clipped(shape, clipped)
        box = [round_coord(v) for v in bbox_of(ring)]
        self.add_annotation(
            shape.label, {**self._common(shape), "bbox": box, "area": area, "segmentation": [flat]}
        )
        self.counts["polygons"] += 1

    def _polygon_from(self, shape: Shape, done: PixelPolygon) -> None:
        """`_polygon` with the numbers computed in bulk: the same notes in the same order."""
        if done.reason == "too_few_points":
            return self._drop(shape, done.reason, done.detail)
        if done.error is not None:
            raise done.error
        if done.reason is not None:
            return self._drop(shape, done.reason, done.detail)
        if done.clipped:
            self._note_clipped(shape, done.clipped)
        # add_annotation({**_common(shape), ...}) in one dict: the same keys in the same
        # order, without the two intermediate dicts (thousands of polygons a job).
        cid = self.ids[shape.label]
        self.used[shape.label] = cid
        ann: dict[str, Any] = {
            "id": len(self.annotations) + 1,
            "image_id": 1 if shape.frame is None else self._image_id(shape),
            "category_id": cid,
            "iscrowd": 0,
        }
        ann.update(split_attributes(shape.attributes))
        ann["gt_id"] = shape.gt_id
        if shape.track_id is not None:
            ann["track_id"] = shape.track_id
        if shape.extra:
            ann.update(shape.extra)
        ann["bbox"], ann["area"], ann["segmentation"] = done.bbox, done.area, [done.flat]
        self.annotations.append(ann)
        self.counts["polygons"] += 1

    def _landmark(self, shape: Shape) -> None:
        size = self._size(shape)
        pts, clipped = _to_pixels(shape, size)
        names, skeleton = self.keypoints.get(shape.label, ([], []))
        count = max([len(names), *shape.keypoint_ids])
        names = [str(i) for i in range(1, count + 1)]
        by_name = dict(zip(shape.point_names, shape.keypoint_ids, strict=True))
        bones = {
            tuple(sorted((by_name[a], by_name[b])))
            for a, b in shape.edges
            if a in by_name and b in by_name and a != b
        }
        merged = sorted({tuple(b) for b in skeleton} | bones)
        self.keypoints[shape.label] = (names, [list(b) for b in merged])
        slots: dict[int, tuple[Pixel, int]] = {
            kid: (p, v) for kid, p, v in zip(shape.keypoint_ids, pts, shape.visibility, strict=True)
        }
        self._note_clipped(shape, clipped)
        box = at_least_a_pixel(
            [round_coord(v) for v in bbox_of(pts)] if pts else [0.0, 0.0, 0.0, 0.0],
            size.width,
            size.height,
        )
        ann = self.add_annotation(
            shape.label,
            {
                **self._common(shape),
                "bbox": box,
                "area": round_coord(box[2] * box[3]),
                "segmentation": box_polygon(box),
                "box_only": True,
                "num_keypoints": sum(1 for _, v in slots.values() if v > 0),
                "_slots": slots,
            },
        )
        ann["keypoints"] = []  # filled in finish(): the category's length is known only then
        self.counts["landmarks"] += 1

    def _extra(self, shape: Shape) -> None:
        size = self._size(shape)
        pts, clipped = _to_pixels(shape, size)
        self._note_clipped(shape, clipped)
        group = f"{shape.kind}s"
        key = shape.gt_id or f"{shape.kind}-{self.counts[f'input_{group}']}"
        entry: dict[str, Any] = {
            "label": shape.label,
            "attributes": shape.attributes,  # extras.json: not a COCO reader's
            "points": [list(p) for p in pts],
            "pointer": shape.pointer,
        }
        if pts:
            entry["bbox"] = [round_coord(v) for v in bbox_of(pts)]
        if shape.raw is not None:
            entry["raw"] = shape.raw
        if shape.frame is not None:
            entry["frame_id"], entry["track_id"] = shape.frame, shape.track_id
        self.extras.setdefault(group, {})[key] = entry
        self.counts[group] += 1

    def finish(self) -> Converted:
        for ann in self.annotations:
            slots = ann.pop("_slots", None)
            if slots is None:
                continue
            label = next(k for k, v in self.used.items() if v == ann["category_id"])
            total = len(self.keypoints[label][0])
            flat: list[float] = []
            for kid in range(1, total + 1):
                (x, y), v = slots.get(kid, ((0.0, 0.0), 0))
                flat += [x, y, v] if v else [0.0, 0.0, 0]
            ann["keypoints"] = flat
        tracks: dict[str, list[int]] = {}
        for ann in self.annotations:
            if "track_id" in ann:
                tracks.setdefault(str(ann["track_id"]), []).append(ann["id"])
        if tracks:
            self.extras["tracks"] = tracks
        for item in self.job.unsupported:
            self.extras.setdefault("unsupported", {})[item.pointer] = {
                "type": item.type_name,
                "raw": item.raw,
            }
        coco = {
            "info": info_block(),
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": category_entries(self.used, self.keypoints),
        }
        counts = dict(sorted(self.counts.items()))
        counts["annotations"] = len(self.annotations)
        counts["unsupported"] = len(self.job.unsupported)
        return Converted(
            coco=coco,
            extras=self.extras,
            counts=counts,
            notes=self.notes,
            ignored_keys=dict(sorted(self.ignored_keys.items())),
        )


def convert_vector_job(
    job: Job,
    size: ImageSize,
    category_ids: Mapping[str, int],
    options: Options,
    key: str,
    limits: Limits | None = None,
    frame_sizes: Mapping[str, ImageSize] | None = None,
) -> CocoBuilder:
    """Add every vector shape of the job; the caller may add raster regions, then `finish()`.
    `frame_sizes`: each frame's own size, for a job of frames."""
    builder = CocoBuilder(job, size, category_ids, options, key, limits, frame_sizes)
    builder.add_shapes(job.shapes)
    return builder
