"""Read -> convert -> write, with the failure rules of SPEC §6.

`Converter` is the conversion core every entry point shares (trigger, HTTP, command line):
bytes in, COCO and mask files out.  `Pipeline` adds the object-store side: skip rules,
at-least-once de-duplication, exact-generation reads, error objects, and the report
written last so nothing half-written looks complete.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import __version__, raster
from .coco import ImageSize, convert_vector_job
from .config import Config
from .errors import ConversionError, TooLargeError, pointer_join
from .fetch import UrlReader
from .gt_studio import Job, Note, RasterSpec, is_bare_legend, parse_job, split_jobs
from .imagesize import size_from_chunks
from .jsonio import dump_json, load_json, load_json_lines
from .legend import parse_legend
from .registry import CategoryRegistry
from .storage import OUTPUT_MARKER, NotFound, ObjectStore, content_type_for

EXPORT_SUFFIXES = (".json", ".jsonl", ".png")
OUTPUT_FILES = {"coco.json", "extras.json", "report.json", "legend.json"}
RESERVED_PREFIXES = ("_errors/", "_registry/")
CONVERTER = {"name": "gtcoco", "version": __version__}
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+@-]+")
_MASK_OUTPUT = re.compile(r"(^|/)masks/(semantic\.png|instances\.png|colors/[0-9a-f]{6}\.png)$")


def key_for(name: str) -> str:
    stem, ext = posixpath.splitext(name)
    return stem if ext else name


def safe_segment(text: str) -> str:
    """A reference id as one path segment: no separators, no dot-dot, never empty."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "_"
    return cleaned[:200]


def skip_reason(name: str, metadata: Mapping[str, str] | None = None) -> str | None:
    """Why an object is not an export to convert, or None.  One log line says it."""
    base = posixpath.basename(name)
    if metadata and metadata.get(OUTPUT_MARKER):
        return "written by gtcoco"
    if name.startswith(RESERVED_PREFIXES) or base in OUTPUT_FILES or _MASK_OUTPUT.search(name):
        return "a gtcoco output name"
    if base.startswith("."):
        return "a hidden file"
    if not name.lower().endswith(EXPORT_SUFFIXES):
        return f"extension is not one of {', '.join(EXPORT_SUFFIXES)}"
    return None


@dataclass(frozen=True)
class SourceRef:
    bucket: str
    name: str
    generation: int | None = None
    size: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "name": self.name,
            "generation": None if self.generation is None else str(self.generation),
        }


@dataclass
class JobOutput:
    key: str
    files: dict[str, bytes]  # relative to the key, report excluded
    coco: dict[str, Any]
    report: dict[str, Any]


@dataclass
class Outcome:
    status: str  # converted | partial | failed | skipped | duplicate | waiting
    key: str
    reason: str = ""
    outputs: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None


@dataclass(frozen=True)
class ParsedJob:
    subkey: str  # "" for a single job, else the reference id (or position) in a batch
    job: Job | None
    error: ConversionError | None = None


class Converter:
    """The one conversion core.  IO happens only through the reader and the registry."""

    def __init__(self, config: Config, reader: UrlReader, registry: CategoryRegistry) -> None:
        self.config, self.reader, self.registry = config, reader, registry
        self.limits, self.options = config.limits, config.options

    # -- parsing ------------------------------------------------------------------------

    def load(self, data: bytes, name: str) -> Any:
        if name.lower().endswith(".jsonl"):
            return load_json_lines(data, self.limits.max_json_depth, self.limits.max_json_bytes)
        return load_json(data, self.limits.max_json_depth, self.limits.max_json_bytes)

    def parse(self, doc: Any) -> list[ParsedJob]:
        """Jobs of a document; in a batch, one bad job does not stop the others."""
        items = split_jobs(doc, self.limits)
        batch = not (len(items) == 1 and items[0][0] == "")
        out: list[ParsedJob] = []
        seen: set[str] = set()
        for position, (pointer, item) in enumerate(items):
            try:
                job, error = parse_job(item, pointer, self.limits), None
            except ConversionError as exc:
                job, error = None, exc
            subkey = ""
            if batch:
                ref = job.reference_id if job else _loose_reference(item)
                subkey = safe_segment(ref) if ref else str(position)
                if subkey in seen:
                    subkey = f"{subkey}-{position}"
                seen.add(subkey)
            out.append(ParsedJob(subkey, job, error))
        return out

    # -- converting ---------------------------------------------------------------------

    def image_size(
        self, job: Job, mask_size: tuple[int, int] | None, relative_to: str
    ) -> ImageSize:
        if job.width and job.height:
            return ImageSize(job.width, job.height, "explicit")
        if mask_size is not None:
            return ImageSize(mask_size[0], mask_size[1], "mask")
        failures = []
        urls = [
            (u, k)
            for u, k in (
                (job.image_url_original, "image_url_original"),
                (job.image_url, "image_url"),
            )
            if u
        ]
        if job.frames and job.frames[0].src:
            urls.append((job.frames[0].src, "video_data/frames/0/src"))
        for url, key in urls:
            try:
                w, h, _ = size_from_chunks(
                    self.reader.chunks(url, relative_to), self.limits.header_max_bytes
                )
                return ImageSize(w, h, "header")
            except ConversionError as exc:
                failures.append(f"{key}: {exc.message}")
        detail = "; ".join(failures) or "no width/height, mask or image URL in the job"
        raise ConversionError(
            "image_size_unavailable",
            f"cannot learn the image size ({detail})",
            pointer_join(job.pointer, urls[0][1] if urls else "image_url"),
        )

    def convert(
        self, job: Job, key: str, mask_bytes: bytes | None = None, relative_to: str = ""
    ) -> JobOutput:
        notes: list[Note] = []
        mask = entries = None
        if job.raster is not None:
            entries, legend_notes = parse_legend(
                job.raster.legend, job.raster.instances, job.raster.pointer
            )
            notes += legend_notes
            if mask_bytes is None:
                if not job.raster.url:
                    raise ConversionError(
                        "missing_mask",
                        "a segmentation job needs a mask url",
                        pointer_join(job.raster.pointer, "url"),
                    )
                mask_bytes = self._read_mask(job.raster, relative_to)
            mask = raster.decode_mask(mask_bytes, self.limits.max_mask_pixels, job.raster.pointer)
        size = self.image_size(
            job, None if mask is None else (mask.width, mask.height), relative_to
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
        labels = job.labels + sorted({e.label for e in entries or []})
        ids = self.registry.ensure(sorted(set(labels)))
        builder = convert_vector_job(job, size, ids, self.options, key)
        builder.notes.extend(notes)
        files: dict[str, bytes] = {}
        raster_stats: dict[str, Any] | None = None
        if mask is not None and entries is not None:
            result = raster.add_regions(builder, mask, entries, self.options)
            files.update(result.files)
            raster_stats = result.stats
        converted = builder.finish()
        files["coco.json"] = dump_json(converted.coco)
        if converted.extras:
            files["extras.json"] = dump_json(converted.extras)
        report: dict[str, Any] = {
            "converter": CONVERTER,
            "key": key,
            "status": "converted",
            "reference_id": job.reference_id,
            "image": {"width": size.width, "height": size.height, "size_source": size.source},
            "options": self.options.as_dict(),
            "counts": converted.counts,
            "notes": [n.as_dict() for n in converted.notes],
        }
        if raster_stats is not None:
            report["raster"] = raster_stats
        return JobOutput(key, files, converted.coco, report)

    def _read_mask(self, spec: RasterSpec, relative_to: str) -> bytes:
        assert spec.url is not None
        try:
            return self.reader.read_all(spec.url, relative_to)
        except ConversionError as exc:
            raise type(exc)(exc.code, exc.message, pointer_join(spec.pointer, "url")) from None


def _loose_reference(item: Any) -> str | None:
    """A bad job's reference id, if one can be seen, so its error gets a stable name."""
    if isinstance(item, dict):
        for holder in (item, item.get("meta"), item.get("build"), item.get("data")):
            if isinstance(holder, dict) and isinstance(holder.get("reference_id"), (str, int)):
                return str(holder["reference_id"])
    return None


def error_document(
    source: list[dict[str, Any]], key: str, error: ConversionError
) -> dict[str, Any]:
    return {
        "converter": CONVERTER,
        "key": key,
        "source": source[0],
        "sources": source,
        "error": error.as_dict(),
    }


class Pipeline:
    """One input object -> its outputs in the output store (SPEC §3, §6)."""

    def __init__(self, source: ObjectStore, out: ObjectStore, converter: Converter) -> None:
        self.source, self.out, self.converter = source, out, converter

    def _already_done(self, key: str, ref: SourceRef) -> bool:
        """At-least-once delivery: a generation whose report or error exists is done."""
        if ref.generation is None:
            return False
        for name in (f"{key}/report.json", f"_errors/{key}.json"):
            found = self.out.read_if_exists(name)
            if found is None:
                continue
            try:
                doc = load_json(found[0], 16, 64 * 1024 * 1024)
            except ConversionError:
                continue
            for src in doc.get("sources", []):
                if src.get("name") == ref.name and src.get("generation") == str(ref.generation):
                    return True
        return False

    def process(self, ref: SourceRef) -> Outcome:
        key = key_for(ref.name)
        reason = skip_reason(ref.name, ref.metadata)
        if reason is None and ref.size == 0:
            reason = "empty object"
        if reason:
            return Outcome("skipped", key, reason)
        if self._already_done(key, ref):
            return Outcome("duplicate", key, "this generation was already converted")
        sources = [ref.as_dict()]
        try:
            if ref.size is not None and ref.size > self.converter.limits.max_object_bytes:
                raise TooLargeError(
                    "object_too_large",
                    f"object is {ref.size} bytes, limit {self.converter.limits.max_object_bytes}",
                )
            data = self.source.read(ref.name, ref.generation)
            if not data:
                return Outcome("skipped", key, "empty object")
            if len(data) > self.converter.limits.max_object_bytes:
                raise TooLargeError("object_too_large", f"object is {len(data)} bytes")
            outcome = self._process_bytes(ref, key, data, sources)
        except NotFound:
            return Outcome("skipped", key, "the object (or this generation of it) is gone")
        except ConversionError as exc:
            return self._fail(key, sources, exc)
        if outcome.status in ("converted", "partial"):
            self._clear_stale_errors(key, outcome.outputs)
        return outcome

    def _clear_stale_errors(self, key: str, written: list[str]) -> None:
        """An input that converts now is no longer poison: remove the `_errors/` entries an
        earlier generation left for its key (and its batch jobs), keeping this run's."""
        mine = (f"_errors/{key}.json", f"_errors/{key}/")
        keep = set(written)
        for name in self.out.list(f"_errors/{key}"):
            if (name == mine[0] or name.startswith(mine[1])) and name not in keep:
                self.out.delete(name)

    def _pair(self, ref: SourceRef, key: str, other_suffix: str) -> SourceRef | None:
        info = self.source.stat(key + other_suffix)
        if info is None:
            return None
        return SourceRef(ref.bucket, info.name, info.generation, info.size, info.metadata)

    def _process_bytes(
        self, ref: SourceRef, key: str, data: bytes, sources: list[dict[str, Any]]
    ) -> Outcome:
        if ref.name.lower().endswith(".png"):
            legend_ref = self._pair(ref, key, ".json")
            if legend_ref is None:
                return Outcome("waiting", key, f"mask waits for its legend {key}.json")
            legend_doc = self.converter.load(
                self.source.read(legend_ref.name, legend_ref.generation), legend_ref.name
            )
            if not is_bare_legend(legend_doc):
                return Outcome(
                    "skipped",
                    key,
                    f"{key}.json is not a legend; the PNG is not a raster export pair",
                )
            return self._convert_pair(legend_doc, data, key, [ref.as_dict(), legend_ref.as_dict()])
        doc = self.converter.load(data, ref.name)
        if is_bare_legend(doc):
            mask_ref = self._pair(ref, key, ".png")
            if mask_ref is None:
                return Outcome("waiting", key, f"legend waits for its mask {key}.png")
            mask = self.source.read(mask_ref.name, mask_ref.generation)
            return self._convert_pair(doc, mask, key, [mask_ref.as_dict(), ref.as_dict()])
        parsed = self.converter.parse(doc)
        if len(parsed) == 1 and parsed[0].subkey == "":
            if parsed[0].error is not None:
                raise parsed[0].error
            assert parsed[0].job is not None
            output = self.converter.convert(parsed[0].job, key, relative_to=ref.name)
            written = self._write(output, sources)
            return Outcome("converted", key, outputs=written, report=output.report)
        return self._convert_batch(parsed, key, ref, sources)

    def _convert_pair(
        self, legend_doc: Any, mask: bytes, key: str, sources: list[dict[str, Any]]
    ) -> Outcome:
        legend = legend_doc.get("legend", legend_doc)
        instances = legend_doc.get("instances") if "legend" in legend_doc else None
        job = parse_job(
            {
                "url": "",
                "legend": legend,
                "instances": instances,
                **{
                    k: legend_doc[k]
                    for k in ("width", "height", "image_url", "reference_id")
                    if k in legend_doc
                },
            },
            "",
            self.converter.limits,
        )
        output = self.converter.convert(job, key, mask_bytes=mask)
        written = self._write(output, sources)
        return Outcome("converted", key, outputs=written, report=output.report)

    def _convert_batch(
        self, parsed: list[ParsedJob], key: str, ref: SourceRef, sources: list[dict[str, Any]]
    ) -> Outcome:
        jobs: list[dict[str, Any]] = []
        outputs: list[str] = []
        errors: list[dict[str, Any]] = []
        for item in parsed:
            job_key = f"{key}/{item.subkey}"
            try:
                if item.error is not None:
                    raise item.error
                assert item.job is not None
                output = self.converter.convert(item.job, job_key, relative_to=ref.name)
                outputs += self._write(output, sources)
                jobs.append(
                    {
                        "key": job_key,
                        "status": "converted",
                        "annotations": output.report["counts"]["annotations"],
                    }
                )
            except ConversionError as exc:
                failed = self._fail(job_key, sources, exc)
                outputs += failed.outputs
                errors += failed.errors
                jobs.append({"key": job_key, "status": "failed", "error": exc.as_dict()})
        status = "converted" if not errors else ("partial" if len(errors) < len(jobs) else "failed")
        report = {
            "converter": CONVERTER,
            "key": key,
            "status": status,
            "source": sources[0],
            "sources": sources,
            "jobs": jobs,
            "outputs": sorted(outputs),
        }
        self.out.write(f"{key}/report.json", dump_json(report), "application/json")
        return Outcome(
            status, key, outputs=[*outputs, f"{key}/report.json"], errors=errors, report=report
        )

    def _write(self, output: JobOutput, sources: list[dict[str, Any]]) -> list[str]:
        names = []
        for rel in sorted(output.files):
            name = f"{output.key}/{rel}"
            self.out.write(name, output.files[rel], content_type_for(rel))
            names.append(name)
        report = {**output.report, "source": sources[0], "sources": sources, "outputs": names}
        self.out.write(f"{output.key}/report.json", dump_json(report), "application/json")
        output.report = report
        return [*names, f"{output.key}/report.json"]

    def _fail(self, key: str, sources: list[dict[str, Any]], exc: ConversionError) -> Outcome:
        name = f"_errors/{key}.json"
        doc = error_document(sources, key, exc)
        self.out.write(name, dump_json(doc), "application/json")
        return Outcome("failed", key, exc.message, outputs=[name], errors=[doc])
