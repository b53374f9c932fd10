"""Recognise GT Studio export shapes by content and parse them into typed records.

Every tolerated variation of the export format lands here (and in `shapes`); nothing else in
the project looks at raw export dicts.  Structural errors raise `ConversionError` with the
JSON pointer of the offending value; geometric oddities become `Note`s for the report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from shared.config import Limits
from shared.errors import ConversionError, pointer_join
from shared.geometry import natural_sorted
from shared.gtstudio.arrays import parse_polygons
from shared.gtstudio.guide import is_guide_coco, is_plain_coco, parse_guide_coco
from shared.gtstudio.records import Frame, Job, Note, RasterSpec, Shape, Unsupported
from shared.gtstudio.shapes import (
    CONTAINER_KEYS,
    SHAPE_TYPES,
    TYPE_ALIASES,
    dimension,
    kept_and_unknown,
    parse_shape,
    str_or_none,
    url_field,
)

# ---------------------------------------------------------------------------------------
# Batches and envelopes


def parse_job(doc: Any, pointer: str, limits: Limits) -> Job:
    """Parse one job in any documented shape (gt-studio-format.md §1)."""
    if not isinstance(doc, dict):
        raise ConversionError("invalid_type", "a job must be a JSON object", pointer)
    if is_guide_coco(doc):
        if is_plain_coco(doc):
            raise ConversionError(
                "already_coco",
                "this is a COCO file already (int ids, categories, category_id): gtcoco "
                "converts GT Studio exports. Use the file as it is, convert the GT Studio "
                "export it came from, or, for one dataset from many gtcoco outputs, run "
                "`gtcoco assemble`",
                pointer,
            )
        return parse_guide_coco(doc, pointer, limits)
    reference_id = str_or_none(doc.get("reference_id"))
    meta = doc.get("meta")
    if isinstance(meta, dict):
        reference_id = str_or_none(meta.get("reference_id")) or reference_id
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
    reference_id = reference_id or str_or_none(doc.get("reference_id"))

    def size_from(*candidates: tuple[Mapping[str, Any], str]) -> tuple[int | None, int | None]:
        for cand, ptr in candidates:
            w, h = dimension(cand, "width", ptr), dimension(cand, "height", ptr)
            if w and h:
                return w, h
        return None, None

    width, height = size_from((doc, pointer), (outer, outer_pointer))
    common = Job(
        pointer=pointer,
        reference_id=reference_id,
        image_url=url_field(doc, "image_url", pointer),
        image_url_original=url_field(doc, "image_url_original", pointer),
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
                url_field(doc, "url", pointer), doc["legend"], doc.get("instances"), pointer
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
        if kind == "polygon":
            shapes.extend(parse_polygons(items, ptr, limits))
            continue
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
                    url_field(data, "url", dptr), data.get("legend"), data.get("instances"), dptr
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
        if not isinstance(frame, dict) or str_or_none(frame.get("frame_id")) is None:
            raise ConversionError("invalid_type", "a frame needs a frame_id", pointer_join(ptr, i))
        fptr = pointer_join(ptr, i)
        width, height = dimension(frame, "width", fptr), dimension(frame, "height", fptr)
        out.append(
            Frame(
                str(frame["frame_id"]),
                url_field(frame, "src", fptr),
                fptr,
                url_field(frame, "src_original", fptr),
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
    track_id = str_or_none(tracker.get("_id", tracker.get("id")))
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
            _, tracker_unknown = kept_and_unknown(tracker)
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
