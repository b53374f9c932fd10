"""The COCO-like file GT Studio's own export guide writes, upgraded to a job."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shared.config import Limits
from shared.errors import ConversionError, pointer_join
from shared.gtstudio.records import Frame, Job, Note, Shape
from shared.gtstudio.shapes import dimension, parse_shape, str_or_none


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


def is_plain_coco(doc: Any) -> bool:
    """A COCO file already (int ids, `categories` with int ids and names, every
    `category_id` one of them): not the guide's, so there is nothing to upgrade."""
    if not (isinstance(doc, dict) and "category" not in doc):
        return False
    images, annotations, categories = (
        doc.get("images"),
        doc.get("annotations"),
        doc.get("categories"),
    )
    if not (isinstance(images, list) and isinstance(annotations, list)):
        return False
    if not isinstance(categories, list) or not all(
        isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str)
        for c in categories
    ):
        return False
    ids = {c["id"] for c in categories}
    return all(isinstance(i, dict) and _is_int(i.get("id")) for i in images) and all(
        isinstance(a, dict) and _is_int(a.get("id")) and a.get("category_id") in ids
        for a in annotations
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_list(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return None
    try:
        numbers = [float(v) for v in value]
    except OverflowError:  # an int past a float's range: JSON allows it, no image does
        return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


def parse_guide_coco(doc: Mapping[str, Any], pointer: str, limits: Limits) -> Job:
    """Upgrade the guide's COCO-like file to a job: pixel coordinates back to normalised
    ones (the builder then gives int ids, `categories`, `area`, `iscrowd`, and each box from
    its polygon where there is one).  Its boxes without a polygon took the first corner the
    annotator drew as the top-left one; whether that was right cannot be known: noted."""
    iptr = pointer_join(pointer, "images")
    sizes: dict[str, tuple[int, int]] = {}
    for i, image in enumerate(doc["images"]):
        ptr = pointer_join(iptr, i)
        if not isinstance(image, dict) or str_or_none(image.get("id")) is None:
            raise ConversionError("invalid_type", "an image needs an id", ptr)
        width, height = dimension(image, "width", ptr), dimension(image, "height", ptr)
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
        image_id = str_or_none(ann.get("image_id"))
        if image_id not in sizes:
            if not single:
                raise ConversionError(
                    "invalid_reference", "image_id names no image", pointer_join(ptr, "image_id")
                )
            image_id = next(iter(sizes))
        w, h = sizes[image_id]
        label = names.get(str_or_none(ann.get("category_id")) or "", ann.get("category_id"))
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
                key = str_or_none(c.get("id"))
                if key is not None:
                    out[key] = c["name"]
    return out
