"""Colour masks -> label image, per-region COCO, index masks, per-colour PNGs, legend.

One pass decides every pixel's legend entry (a 24-bit lookup table); regions' boxes come
from horizontal runs of that label image; all per-region work (binary mask, RLE, contours,
IoU, 1-bit PNG) is bounded to the region's box.  No per-colour full-frame scan or copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pycocotools import mask as mask_utils

from .coco import CocoBuilder
from .config import Options
from .errors import ConversionError, TooLargeError
from .gt_studio import Note
from .imagesize import size_from_header
from .jsonio import dump_json
from .legend import LegendEntry
from .pngwrite import encode_box_bitmask, encode_gray

UNLABELED = 1 << 24  # packed value of a transparent pixel: outside every colour
MIN_POLYGON_IOU = 0.95
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Mask:
    """A decoded mask as packed 0xRRGGBB values (UNLABELED where alpha is 0)."""

    packed: npt.NDArray[np.uint32]

    @property
    def height(self) -> int:
        return int(self.packed.shape[0])

    @property
    def width(self) -> int:
        return int(self.packed.shape[1])

    def resized(self, width: int, height: int) -> Mask:
        rows = (np.arange(height) * self.height // height).astype(np.intp)
        cols = (np.arange(width) * self.width // width).astype(np.intp)
        return Mask(np.ascontiguousarray(self.packed[rows][:, cols]))


def decode_mask(data: bytes, max_pixels: int, pointer: str = "") -> Mask:
    """Decode a PNG mask (RGBA, RGB, LA, grey or palette), refusing bombs before decoding."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ConversionError("invalid_mask", "the mask is not a PNG", pointer)
    size = size_from_header(data)
    if size is None:
        raise ConversionError("invalid_mask", "the mask PNG header is unreadable", pointer)
    if size[0] * size[1] > max_pixels:
        raise TooLargeError(
            "mask_too_large",
            f"mask is {size[0]}x{size[1]} = {size[0] * size[1]} pixels, limit {max_pixels}",
            pointer,
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ConversionError("invalid_mask", "the mask PNG does not decode", pointer)
    if image.dtype == np.uint16:
        image = np.right_shift(image, 8).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    elif image.shape[2] == 2:  # grey + alpha
        grey, alpha = image[..., 0], image[..., 1]
        image = cv2.merge([grey, grey, grey, alpha])
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    image = np.ascontiguousarray(image)
    # Little-endian BGRA bytes read as uint32 are 0xAARRGGBB: no per-channel arithmetic.
    packed = image.view(np.uint32).reshape(image.shape[:2])
    transparent = packed < (1 << 24)
    packed &= 0xFFFFFF
    packed[transparent] = UNLABELED
    return Mask(packed)


@dataclass
class Region:
    color: int  # 0xRRGGBB, or UNLABELED
    x0: int
    y0: int
    x1: int
    y1: int
    pixels: int


def color_regions(packed: npt.NDArray[np.uint32]) -> dict[int, Region]:
    """Box and pixel count of every colour, from horizontal runs.

    Masks are piecewise constant, so runs are far fewer than pixels: one vectorised pass
    finds them, and only the runs are sorted, never the pixels.
    """
    height, width = packed.shape
    starts = np.ones((height, width), dtype=bool)
    np.not_equal(packed[:, 1:], packed[:, :-1], out=starts[:, 1:])
    rows, cols = np.nonzero(starts)
    del starts
    values = packed[rows, cols]
    ends = np.empty_like(cols)
    ends[:-1] = cols[1:]
    ends[-1] = width
    ends[:-1][rows[1:] != rows[:-1]] = width
    colors, inverse = np.unique(values, return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # stable: rows stay ascending in each group
    rows, cols, ends, inverse = rows[order], cols[order], ends[order], inverse[order]
    bounds = np.flatnonzero(np.r_[True, inverse[1:] != inverse[:-1]])
    last = np.r_[bounds[1:], inverse.size] - 1
    x0 = np.minimum.reduceat(cols, bounds)
    x1 = np.maximum.reduceat(ends, bounds)
    pixels = np.add.reduceat(ends - cols, bounds)
    return {
        int(colors[i]): Region(
            int(colors[i]),
            int(x0[i]),
            int(rows[b]),
            int(x1[i]),
            int(rows[last[i]]) + 1,
            int(pixels[i]),
        )
        for i, b in enumerate(bounds)
    }


def box_rle(
    box: npt.NDArray[np.bool_], x0: int, y0: int, width: int, height: int
) -> dict[str, Any]:
    """Compressed COCO RLE of a full-size mask that is `box` at (x0, y0), from the box alone.

    COCO counts run down columns.  A zero row under the box separates its columns, and each
    transition's box position maps to a full-image index, so the work follows the box.
    """
    h, w = box.shape
    padded = np.zeros((w, h + 1), dtype=np.int8)
    padded[:, :h] = box.T
    flat = padded.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        change = np.concatenate(([0], change))
    full = (x0 + change // (h + 1)) * height + (y0 + change % (h + 1))
    edges = np.empty(full.size + 2, dtype=np.int64)
    edges[0], edges[1:-1], edges[-1] = 0, full, width * height
    counts = (edges[1:] - edges[:-1]).tolist()
    rle = mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def box_polygons(box: npt.NDArray[np.uint8]) -> tuple[list[list[float]], int, int]:
    """Outer contours (box coordinates, pixel-corner convention) and counts of outers/holes."""
    contours, hierarchy = cv2.findContours(box, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    polygons, outers, holes = [], 0, 0
    for contour, info in zip(contours, hierarchy[0] if hierarchy is not None else [], strict=False):
        if info[3] >= 0:
            holes += 1
            continue
        outers += 1
        pts = contour.reshape(-1, 2).astype(np.float64)
        if len(pts) < 3:
            continue
        # Contours run through pixel centres; pycocotools covers a pixel when its centre is
        # inside, so push each vertex half a pixel outwards from the contour's centroid.
        centre = pts.mean(axis=0)
        pts = pts + 0.5 + np.sign(pts - centre) * 0.5
        polygons.append(pts.reshape(-1).tolist())
    return polygons, outers, holes


def polygon_iou(polygons: list[list[float]], box: npt.NDArray[np.bool_]) -> tuple[float, int]:
    """IoU of the polygons' pycocotools rasterisation with the pixels, and its area."""
    h, w = box.shape
    if not polygons:
        return 0.0, 0
    # Both sides as box-local RLEs: pycocotools compares runs, no pixel arrays are drawn.
    drawn = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    pixels = mask_utils.encode(np.asfortranarray(box.view(np.uint8)))
    iou = float(mask_utils.iou([drawn], [pixels], [0])[0][0])
    return iou, int(mask_utils.area(drawn))


@dataclass
class RasterResult:
    files: dict[str, bytes]
    stats: dict[str, Any]


def add_regions(
    builder: CocoBuilder, mask: Mask, entries: Sequence[LegendEntry], options: Options
) -> RasterResult:
    """Add one annotation per legend colour present; return the mask files and legend."""
    width, height = mask.width, mask.height
    regions = color_regions(mask.packed)
    # Index masks are painted region by region, inside each box: no full-frame lookup.
    semantic_dtype = np.uint8 if max(builder.ids.values(), default=0) < 256 else np.uint16
    semantic = np.zeros((height, width), dtype=semantic_dtype)
    instances = np.zeros((height, width), dtype=np.uint16)
    legend_colors = {e.rgb for e in entries}
    unknown: list[dict[str, Any]] = [
        {"color": f"#{c:06x}", "pixels": r.pixels}
        for c, r in sorted(regions.items())
        if c not in legend_colors and c != UNLABELED
    ]
    transparent = regions[UNLABELED].pixels if UNLABELED in regions else 0
    files: dict[str, bytes] = {}
    legend_entries: list[dict[str, Any]] = []
    ious: list[float] = []
    kinds = {"polygon": 0, "rle": 0}
    for entry in entries:
        cid = builder.ids[entry.label]
        region = regions.get(entry.rgb)
        row: dict[str, Any] = {
            "color": f"#{entry.hex}",
            "label": entry.label,
            "instance": entry.instance,
            "category_id": cid,
            "annotation_id": None,
            "pixels": 0,
            "mask": None,
        }
        if region is None:
            legend_entries.append(row)
            continue
        window = (slice(region.y0, region.y1), slice(region.x0, region.x1))
        box = mask.packed[window] == entry.rgb
        segmentation, iou, area = _segmentation(box, region, width, height, options)
        if iou is not None:
            ious.append(iou)
        kinds["rle" if isinstance(segmentation, dict) else "polygon"] += 1
        fields: dict[str, Any] = {
            "bbox": [region.x0, region.y0, region.x1 - region.x0, region.y1 - region.y0],
            "area": area,
            "segmentation": segmentation,
            "attributes": {},
            "gt_id": entry.gt_id,
            "color": f"#{entry.hex}",
        }
        if entry.instance is not None:
            fields["instance"] = entry.instance
        ann = builder.add_annotation(entry.label, fields)
        if ann["id"] > 0xFFFF:
            raise TooLargeError(
                "too_many_annotations", "instances.png holds at most 65535 annotation ids"
            )
        semantic[window][box] = cid
        instances[window][box] = ann["id"]
        name = f"masks/colors/{entry.hex}.png"
        files[name] = encode_box_bitmask(box, region.x0, region.y0, width, height)
        row.update(annotation_id=ann["id"], pixels=region.pixels, mask=f"colors/{entry.hex}.png")
        legend_entries.append(row)
    builder.counts["raster_regions"] += sum(kinds.values())
    files["masks/semantic.png"] = encode_gray(semantic)
    files["masks/instances.png"] = encode_gray(instances)
    labeled = int(sum(r["pixels"] for r in legend_entries))
    legend = {
        "width": width,
        "height": height,
        "entries": legend_entries,
        "unlabeled_pixels": width * height - labeled,
        "unknown_colors": unknown,
    }
    files["masks/legend.json"] = dump_json(legend)
    if unknown:
        builder.notes.append(
            Note(
                "ignored",
                "unknown_colors",
                "",
                f"{len(unknown)} mask colour(s) not in the legend, "
                f"{sum(u['pixels'] for u in unknown)} pixels left unlabeled",
            )
        )
    stats = {
        "regions": sum(kinds.values()),
        "polygons": kinds["polygon"],
        "rle": kinds["rle"],
        "legend_colors": len(entries),
        "absent_colors": sum(1 for e in entries if e.rgb not in regions),
        "unknown_colors": len(unknown),
        "transparent_pixels": transparent,
        "polygon_iou_min": round(min(ious), 4) if ious else None,
        "polygon_iou_mean": round(sum(ious) / len(ious), 4) if ious else None,
    }
    return RasterResult(files, stats)


def _segmentation(
    box: npt.NDArray[np.bool_], region: Region, width: int, height: int, options: Options
) -> tuple[Any, float | None, int]:
    """Polygons when faithful (IoU >= 0.95 with the pixels), else exact RLE.

    `area` is what pycocotools computes for the segmentation (SPEC §4): the pixel count
    for RLE, the rasterised polygon's for polygons.
    """
    if options.raster_segmentation != "rle":
        polygons, outers, holes = box_polygons(box.view(np.uint8))
        simple = outers == 1 and holes == 0
        if polygons and (simple or options.raster_segmentation == "polygon"):
            iou, area = polygon_iou(polygons, box)
            if iou >= MIN_POLYGON_IOU:
                offset = np.array([region.x0, region.y0], dtype=np.float64)
                shifted = [
                    np.round(np.asarray(p).reshape(-1, 2) + offset, 2).reshape(-1).tolist()
                    for p in polygons
                ]
                return shifted, iou, area
    return box_rle(box, region.x0, region.y0, width, height), None, region.pixels
