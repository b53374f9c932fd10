"""The convert stage: a parsed job and what `resolve` read for it in, its files out.

Pure: no network, no storage, no registry; everything it needs arrives in `Inputs`.  The
order in which it looks at a job's parts is the order errors are reported in, so a job
with several faults is always reported by the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared import __version__
from shared.coco.builder import ImageSize, convert_vector_job
from shared.config import Limits, Options
from shared.errors import ConversionError, TooLargeError, pointer_join
from shared.gtstudio.legend import parse_legend
from shared.gtstudio.records import Job, Note
from shared.jsonio import dump_json
from shared.raster import regions as raster

CONVERTER = {"name": "gtcoco", "version": __version__}


@dataclass(frozen=True)
class Inputs:
    """What a job's conversion reads from outside, each part a value or the error that
    reading it met (raised by `convert_job` at the point the part is needed)."""

    mask: bytes | ConversionError | None = None  # segmentation jobs only
    header_size: ImageSize | ConversionError | None = None  # when nothing else gives one
    frames: Mapping[str, ImageSize] | ConversionError = field(default_factory=dict)
    ids: Mapping[str, int] | ConversionError | None = None  # category ids of its labels


@dataclass
class JobOutput:
    key: str
    files: dict[str, bytes]  # relative to the job's folder, report excluded
    coco: dict[str, Any]
    report: dict[str, Any]


def _value(part: Any) -> Any:
    if isinstance(part, ConversionError):
        raise part
    return part


def job_labels(job: Job) -> list[str]:
    """Every label the job's COCO needs an id for (legend labels included); raises the
    legend's own error if it has one."""
    labels = list(job.labels)
    if job.raster is not None:
        entries, _ = parse_legend(job.raster.legend, job.raster.instances, job.raster.pointer)
        labels += sorted({e.label for e in entries})
    return sorted(set(labels))


def image_size(job: Job, mask_size: tuple[int, int] | None, inputs: Inputs) -> ImageSize:
    """The job's own image size: explicit fields, else the mask's, else the header of the
    first image URL that answered (read by `resolve`), else its first frame's."""
    if job.width and job.height:
        return ImageSize(job.width, job.height, "explicit")
    if mask_size is not None:
        return ImageSize(mask_size[0], mask_size[1], "mask")
    if not (job.image_url_original or job.image_url) and job.frames:
        frames: Mapping[str, ImageSize] = _value(inputs.frames)
        return frames[job.frames[0].frame_id]
    size = _value(inputs.header_size)
    assert isinstance(size, ImageSize), "resolve reads a header whenever one is needed"
    return size


def convert_job(
    job: Job, key: str, inputs: Inputs, options: Options, limits: Limits, files: bool = True
) -> JobOutput:
    """COCO, extras, masks and the report of one job; `files=False` leaves out every file
    but `coco.json` (HTTP `/convert` answers with the COCO alone)."""
    notes: list[Note] = []
    mask = entries = None
    if job.raster is not None:
        entries, legend_notes = parse_legend(
            job.raster.legend, job.raster.instances, job.raster.pointer
        )
        notes += legend_notes
        mask_bytes = _value(inputs.mask)
        assert isinstance(mask_bytes, bytes), "resolve reads the mask of a segmentation job"
        mask = raster.decode_mask(mask_bytes, limits.max_mask_pixels, job.raster.pointer)
    frames: Mapping[str, ImageSize] = _value(inputs.frames) if job.frames else {}
    size = image_size(job, None if mask is None else (mask.width, mask.height), inputs)
    if mask is not None and size.width * size.height > limits.max_mask_pixels:
        # The mask is scaled to the image: the scaled raster is what gets allocated.
        raise TooLargeError(
            "mask_too_large",
            f"the mask would be scaled to {size.width}x{size.height} = "
            f"{size.width * size.height} pixels, limit {limits.max_mask_pixels}",
            job.raster.pointer if job.raster else "",
        )
    if mask is not None and (mask.width, mask.height) != (size.width, size.height):
        notes.append(
            Note(
                "repaired",
                "mask_size_differs",
                job.raster.pointer if job.raster else "",
                f"mask {mask.width}x{mask.height} scaled (nearest) to "
                f"image {size.width}x{size.height}",
            )
        )
        mask = mask.resized(size.width, size.height)
    ids: Mapping[str, int] = _value(inputs.ids)
    assert ids is not None, "resolve gives ids to every job it read without error"
    builder = convert_vector_job(job, size, ids, options, key, limits, frames)
    builder.notes.extend(notes)
    out: dict[str, bytes] = {}
    raster_stats: dict[str, Any] | None = None
    if mask is not None and entries is not None:
        result = raster.add_regions(builder, mask, entries, options, files=files)
        out.update(result.files)
        raster_stats = result.stats
    converted = builder.finish()
    out["coco.json"] = dump_json(converted.coco)
    if converted.extras and files:
        out["extras.json"] = dump_json(converted.extras)
    report: dict[str, Any] = {
        "converter": CONVERTER,
        "key": key,
        "status": "converted",
        "reference_id": job.reference_id,
        "image": {"width": size.width, "height": size.height, "size_source": size.source},
        **(
            {
                "frames": [
                    {"frame_id": f, "width": s.width, "height": s.height, "size_source": s.source}
                    for f, s in frames.items()
                ]
            }
            if frames
            else {}
        ),
        "options": options.as_dict(),
        "counts": converted.counts,
        "notes": [n.as_dict() for n in converted.notes],
    }
    if converted.ignored_keys:
        report["ignored_keys"] = converted.ignored_keys
    if raster_stats is not None:
        report["raster"] = raster_stats
    return JobOutput(key, out, converted.coco, report)


def missing_mask(job: Job) -> ConversionError:
    assert job.raster is not None
    return ConversionError(
        "missing_mask",
        "a segmentation job needs a mask url",
        pointer_join(job.raster.pointer, "url"),
    )
