"""Colour masks -> per-region COCO, index masks, per-colour PNGs, legend.

Everything comes from one decode and two run passes (runs.py): boxes, pixel counts, Euler
numbers, index masks, every colour's 1-bit PNG, every exact outline (outlines.py) and
every exact RLE, for all colours at once.  No per-colour scan, copy or trace of pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pycocotools import mask as mask_utils

from shared.coco.builder import CocoBuilder
from shared.config import Options
from shared.errors import ConversionError, TooLargeError
from shared.gtstudio.legend import LegendEntry
from shared.gtstudio.records import Note
from shared.jsonio import dump_json
from shared.raster.imagesize import size_from_header
from shared.raster.outlines import boundaries, outline_polygons
from shared.raster.pngread import decode_png
from shared.raster.pngwrite import Segment, encode_bitmasks, index_pngs
from shared.raster.runs import (
    IntArray,
    Regions,
    RowRuns,
    column_runs,
    euler_numbers,
    region_summary,
    rle_strings,
    row_bands,
    row_runs,
)

UNLABELED = 1 << 24  # packed value of a transparent pixel: outside every colour
MIN_POLYGON_IOU = 0.95
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pixels per band of the decode's pass: its scratch (4 bytes a pixel) stays in cache.
_PASS_PIXELS = 1 << 17


def color_key(rgb: int) -> int:
    """The packed value of colour 0xRRGGBB, and back: its three bytes in reverse order."""
    return ((rgb & 0xFF) << 16) | (rgb & 0xFF00) | (rgb >> 16)


@dataclass
class Mask:
    """A decoded mask as packed values: each pixel's R, G, B bytes read as one
    little-endian number, 0xBBGGRR (`color_key`), UNLABELED where alpha is 0.  That is
    libspng's RGBA with the alpha byte masked off: the fast decoder's pixels need no
    byte reordering (which cost 1.6 ms of 4.3 at 1920x1080)."""

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
    image, rgb_order = decode_png(data)
    if image is None:
        raise ConversionError("invalid_mask", "the mask PNG does not decode", pointer)
    if image.dtype == np.uint16:
        image = np.right_shift(image, 8).astype(np.uint8)
    if image.ndim == 2:
        image, rgb_order = cv2.cvtColor(image, cv2.COLOR_GRAY2RGBA), True
    elif image.shape[2] == 2:  # grey + alpha
        grey, alpha = image[..., 0], image[..., 1]
        image, rgb_order = cv2.merge([grey, grey, grey, alpha]), True
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA if rgb_order else cv2.COLOR_BGR2RGBA)
        rgb_order = True
    image = np.ascontiguousarray(image)
    # Little-endian RGBA bytes read as uint32 are 0xAABBGGRR: no per-channel arithmetic.
    height, width = int(image.shape[0]), int(image.shape[1])
    packed = image.view(np.uint32).reshape(height, width)
    bands = row_bands(height, width, _PASS_PIXELS)
    transparent = np.empty((bands[0][1] - bands[0][0], width), dtype=bool)
    for r0, r1 in bands:
        band = packed[r0:r1]
        seen = transparent[: r1 - r0]
        np.less(band, 1 << 24, out=seen)  # alpha is the top byte in either order
        if rgb_order:
            np.bitwise_and(band, 0xFFFFFF, out=band)
        else:  # OpenCV's BGRA reads as 0xAARRGGBB: byte-swapped, 0xBBGGRRAA
            band.byteswap(inplace=True)
            np.right_shift(band, 8, out=band)
        np.copyto(band, UNLABELED, where=seen)
    return Mask(packed)


def polygon_iou(polygons: list[list[int]], exact: dict[str, Any]) -> tuple[float, int]:
    """IoU of the polygons' pycocotools rasterisation with the exact RLE, and its area."""
    height, width = exact["size"]
    drawn = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    iou = float(mask_utils.iou([drawn], [exact], [0])[0][0])
    return iou, int(mask_utils.area(drawn))


@dataclass
class RasterResult:
    files: dict[str, bytes]
    stats: dict[str, Any]


@dataclass
class _Present:
    """A legend colour found in the mask, and its annotation."""

    entry: LegendEntry
    index: int  # into the runs' colours
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    pixels: int
    annotation: dict[str, Any]


def add_regions(
    builder: CocoBuilder,
    mask: Mask,
    entries: Sequence[LegendEntry],
    options: Options,
    files: bool = True,
) -> RasterResult:
    """Add one annotation per legend colour present; return the mask files and legend
    (`files=False`: the annotations alone, no PNG encoded)."""
    # A second thread takes long calls that release the GIL (numpy passes over the
    # frame, zlib): first the column runs of COCO's RLEs, which need only the pixels,
    # while this thread finds the row runs; then the index masks, band by band, while
    # this one does the per-colour work.  Sharing the per-colour work measured slower:
    # two threads of short calls queue for the GIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        columns = pool.submit(column_runs, mask.packed)
        return _add_regions(builder, mask, entries, options, files, pool, columns)


def _add_regions(
    builder: CocoBuilder,
    mask: Mask,
    entries: Sequence[LegendEntry],
    options: Options,
    files: bool,
    pool: ThreadPoolExecutor,
    columns: Future[tuple[IntArray, npt.NDArray[np.uint32]]],
) -> RasterResult:
    width, height = mask.width, mask.height
    runs = row_runs(mask.packed)
    regions = region_summary(runs)
    index_of = {int(c): i for i, c in enumerate(runs.colors.tolist())}
    # Plain ints once: numpy scalars cost a conversion on every use.
    boxes = list(
        zip(
            regions.x0.tolist(),
            regions.y0.tolist(),
            regions.x1.tolist(),
            regions.y1.tolist(),
            strict=True,
        )
    )
    pixels = regions.pixels.tolist()
    present: list[_Present] = []
    for entry in entries:
        i = index_of.get(color_key(entry.rgb))
        if i is None:
            continue
        x0, y0, x1, y1 = boxes[i]
        fields: dict[str, Any] = {
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": 0,
            "segmentation": None,
            "attributes": {},
            "gt_id": entry.gt_id,
            "color": f"#{entry.hex}",
        }
        if entry.instance is not None:
            fields["instance"] = entry.instance
        present.append(
            _Present(entry, i, boxes[i], pixels[i], builder.add_annotation(entry.label, fields))
        )
    if present and present[-1].annotation["id"] > 0xFFFF:
        raise TooLargeError(
            "too_many_annotations", "instances.png holds at most 65535 annotation ids"
        )
    semantic_of: npt.NDArray[np.unsignedinteger[Any]] = np.zeros(
        runs.colors.size,
        dtype=np.uint8 if max(builder.ids.values(), default=0) < 256 else np.uint16,
    )
    instance_of = np.zeros(runs.colors.size, dtype=np.uint16)
    at = [p.index for p in present]
    semantic_of[at] = [p.annotation["category_id"] for p in present]
    instance_of[at] = [p.annotation["id"] for p in present]
    shape = (height, width)
    mode = options.raster_segmentation
    plan = _plan_outlines(runs, regions, present, mode, width)
    index = index_pngs(runs, [semantic_of, instance_of] if files else [], shape)
    bands = [(pool.submit(job), job) for job in index.jobs]
    _draw_from_runs(runs, plan)
    _trace(runs, plan, mode, width)
    exact_needed, ious, kinds = plan.exact_needed, plan.ious, plan.kinds
    wanted = runs.colors[np.array([p.index for p, _ in exact_needed], dtype=np.intp)]

    def rles() -> list[str]:
        return rle_strings(*columns.result(), wanted, mask.packed.size)

    # The helper works through its queue from the front (index mask bands, then the RLE
    # strings); once the colour PNGs and the legend are done, this thread takes back
    # from the end what the helper has not started.  When the second core is slow
    # (these VMs' other tenants: two threads of zlib ran 1.5x, not 2x, as fast as one),
    # nothing waits on it.
    rle_job = pool.submit(rles)
    color_pngs = _color_pngs(runs, present, width, height) if files else {}
    legend, unknown = _legend(builder, entries, present, runs.colors, pixels, width, height)
    counts = rles() if rle_job.cancel() else rle_job.result()
    _finish_exact(exact_needed, counts, [height, width], ious, kinds)
    segments = _taken_back(bands)  # none without files
    semantic_png, instances_png = index.assemble(segments) if files else (b"", b"")
    out = {"masks/semantic.png": semantic_png, "masks/instances.png": instances_png}
    out.update(color_pngs)
    builder.counts["raster_regions"] += len(present)
    out["masks/legend.json"] = legend
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
    transparent = pixels[index_of[UNLABELED]] if UNLABELED in index_of else 0
    stats = {
        "regions": len(present),
        "polygons": kinds["polygon"],
        "rle": kinds["rle"],
        "legend_colors": len(entries),
        "absent_colors": len(entries) - len(present),
        "unknown_colors": len(unknown),
        "transparent_pixels": transparent,
        "polygon_iou_min": round(min(ious), 4) if ious else None,
        "polygon_iou_mean": round(sum(ious) / len(ious), 4) if ious else None,
    }
    return RasterResult(out if files else {}, stats)


def _taken_back(jobs: list[tuple[Future[Segment], Callable[[], Segment]]]) -> list[Segment]:
    """Each job's result: those the helper has not started (the last ones, as it takes
    them in order) run here, last first; then the rest are waited for."""
    done: dict[int, Segment] = {}
    for i in range(len(jobs) - 1, -1, -1):
        future, job = jobs[i]
        if not future.cancel():
            break
        done[i] = job()
    return [done[i] if i in done else future.result() for i, (future, _) in enumerate(jobs)]


def _legend(
    builder: CocoBuilder,
    entries: Sequence[LegendEntry],
    present: list[_Present],
    colors: npt.NDArray[np.uint32],
    pixels: list[int],
    width: int,
    height: int,
) -> tuple[bytes, list[dict[str, Any]]]:
    """legend.json's bytes (every legend colour, found or not, and the mask's colours
    not in the legend), and those unknown colours."""
    in_legend = {p.index for p in present}  # the mask's colours in the legend
    unknown: list[dict[str, Any]] = sorted(
        (
            {"color": f"#{color_key(c):06x}", "pixels": pixels[i]}
            for i, c in enumerate(colors.tolist())
            if i not in in_legend and c != UNLABELED
        ),
        key=lambda u: str(u["color"]),
    )
    annotation_of = {p.entry.rgb: p for p in present}
    rows: list[LegendRow] = []
    for entry in entries:
        found = annotation_of.get(entry.rgb)
        rows.append(
            (
                entry.hex,
                entry.label,
                entry.instance,
                builder.ids[entry.label],
                found.annotation["id"] if found else None,
                found.pixels if found else 0,
            )
        )
    return legend_json(width, height, rows, unknown), unknown


# One legend colour of legend.json: hex, label, instance, category id, annotation id and
# pixels (None and 0 when the colour is absent from the mask).
LegendRow = tuple[str, str, int | None, int, int | None, int]


def legend_json(
    width: int, height: int, rows: Sequence[LegendRow], unknown: list[dict[str, Any]]
) -> bytes:
    """legend.json: the bytes `dump_json` gives for it (the tests check), written with one
    format string per colour.  Measured with 1000 colours: 6.8 ms for the legend as
    dicts through the json module (its encoder sorts every dict's keys), 2.1 ms this way."""
    labels: dict[str, str] = {}
    parts = []
    labeled = 0
    for hx, label, instance, category_id, annotation_id, pixels in rows:
        text = labels.get(label)
        if text is None:
            text = labels[label] = encode_basestring(label)
        head = (
            f'{{"annotation_id":{"null" if annotation_id is None else annotation_id}'
            f',"category_id":{category_id},"color":"#{hx}"'
            f',"instance":{"null" if instance is None else instance},"label":{text}'
        )
        if annotation_id is None:
            parts.append(f'{head},"mask":null,"pixels":0}}')
        else:
            parts.append(f'{head},"mask":"colors/{hx}.png","pixels":{pixels}}}')
            labeled += pixels
    rest = dump_json(
        {
            "height": height,
            "unknown_colors": unknown,
            "unlabeled_pixels": width * height - labeled,
            "width": width,
        }
    )
    # The other keys sort after "entries": they follow it in the same object.
    return f'{{"entries":[{",".join(parts)}],'.encode() + rest[1:]


def _color_pngs(
    runs: RowRuns, present: list[_Present], width: int, height: int
) -> dict[str, bytes]:
    """Each colour's full-size 1-bit PNG, all written in one pass over their runs."""
    indices = np.array([p.index for p in present], dtype=np.intp)
    pngs = encode_bitmasks(runs, indices, width, height)
    return {f"masks/colors/{p.entry.hex}.png": png for p, png in zip(present, pngs, strict=True)}


@dataclass
class _Outlines:
    """Where the regions' outlines stand: those drawn from the runs, those to trace
    inside their boxes, those left for exact RLE; the IoUs and counts so far."""

    from_runs: list[_Present]
    to_trace: list[_Present]
    exact_needed: list[tuple[_Present, list[list[int]]]]
    ious: list[float]
    kinds: dict[str, int]


def _plan_outlines(
    runs: RowRuns, regions: Regions, present: list[_Present], mode: str, width: int
) -> _Outlines:
    """Sort the regions by how they get their segmentation.

    An outline is exact (IoU 1: pycocotools rasterises it to exactly the pixels, which
    the tests check): drawn from the runs when the region is one run per row
    (`outline_polygons`), else its boundary cycle when it is one component without holes
    (`_trace`).  Auto mode sends the regions whose components minus holes
    is not 1 (known from the runs) straight to exact RLE; polygon mode traces every
    region and keeps the outlines of several components (holes filled) when their IoU
    with the pixels is >= 0.95 (`_finish_exact`).
    """
    row_convex = regions.row_convex.tolist()
    from_runs = [p for p in present if mode != "rle" and row_convex[p.index]]
    rest = [p for p in present if not (mode != "rle" and row_convex[p.index])]
    plan = _Outlines(from_runs, [], [], [], {"polygon": 0, "rle": 0})
    if mode == "polygon":
        plan.to_trace = rest
    elif mode == "auto":
        at = np.array([p.index for p in rest], dtype=np.intp)
        euler = euler_numbers(runs, at, width).tolist()
        plan.to_trace = [p for p, e in zip(rest, euler, strict=True) if e == 1]
        plan.exact_needed = [(p, []) for p, e in zip(rest, euler, strict=True) if e != 1]
    else:
        plan.exact_needed = [(p, []) for p in rest]
    return plan


def _draw_from_runs(runs: RowRuns, plan: _Outlines) -> None:
    outlines = outline_polygons(runs, np.array([p.index for p in plan.from_runs], dtype=np.intp))
    for p, outline in zip(plan.from_runs, outlines, strict=True):
        p.annotation["segmentation"] = [outline]
        p.annotation["area"] = p.pixels
    plan.ious.extend([1.0] * len(outlines))
    plan.kinds["polygon"] += len(outlines)


def _trace(runs: RowRuns, plan: _Outlines, mode: str, width: int) -> None:
    """Outlines of the regions to trace, from their boundary cycles: exact for one
    component without holes; in polygon mode, several components or holes filled are
    kept to check against the pixels; the rest to exact RLE."""
    found = boundaries(runs, np.array([p.index for p in plan.to_trace], dtype=np.intp), width)
    at = 0
    for p, outer, holes in zip(
        plan.to_trace, found.outer.tolist(), found.holes.tolist(), strict=True
    ):
        polygons = found.polygons[at : at + outer]
        at += outer
        if outer == 1 and not holes:
            p.annotation["segmentation"], p.annotation["area"] = polygons, p.pixels
            plan.ious.append(1.0)
            plan.kinds["polygon"] += 1
        else:
            plan.exact_needed.append((p, polygons if mode == "polygon" else []))
    plan.exact_needed.sort(key=lambda item: item[0].index)  # colour order, as rle_strings


def _finish_exact(
    exact_needed: list[tuple[_Present, list[list[int]]]],
    counts: list[str],
    size: list[int],
    ious: list[float],
    kinds: dict[str, int],
) -> None:
    """Exact RLE for the remaining regions, or polygon mode's outlines where faithful."""
    for (p, polygons), rle_counts in zip(exact_needed, counts, strict=True):
        exact = {"size": size, "counts": rle_counts}
        if polygons:
            iou, area = polygon_iou(polygons, exact)
            if iou >= MIN_POLYGON_IOU:
                p.annotation["segmentation"], p.annotation["area"] = polygons, area
                ious.append(iou)
                kinds["polygon"] += 1
                continue
        p.annotation["segmentation"], p.annotation["area"] = exact, p.pixels
        kinds["rle"] += 1
