"""Read -> convert -> write, with the failure rules of SPEC §6.

`Converter` is the conversion core every entry point shares (trigger, HTTP, command line):
bytes in, COCO and mask files out.  `Pipeline` adds the object-store side: skip rules, the
output namespace (`layout`), newest-generation-wins, at-least-once de-duplication,
exact-generation reads, error objects, and the report written last so nothing half-written
looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared import __version__
from shared.app import layout
from shared.app.layout import Place
from shared.coco.builder import ImageSize, convert_vector_job
from shared.config import Config
from shared.errors import (
    ConfigurationError,
    ConversionError,
    GtcocoError,
    TooLargeError,
    TransientError,
    pointer_join,
)
from shared.gtstudio.jobs import parse_job, split_jobs
from shared.gtstudio.legend import is_bare_legend, parse_legend
from shared.gtstudio.records import Job, Note, RasterSpec
from shared.io.fetch import UrlReader
from shared.io.registry import CategoryRegistry
from shared.io.storage import (
    OUTPUT_MARKER,
    AccessDenied,
    NotFound,
    ObjectStore,
    PreconditionFailed,
    content_type_for,
)
from shared.jsonio import dump_json, load_json, load_json_lines
from shared.raster import regions as raster
from shared.raster.imagesize import size_from_chunks

EXPORT_SUFFIXES = (".json", ".jsonl", ".png")
FRAME_HEADER_WORKERS = 8  # concurrent header reads for one job's frames
CONVERTER = {"name": "gtcoco", "version": __version__}
log = logging.getLogger(__name__)
# Completion markers and locks are small; a larger one was not written by gtcoco.
MARKER_MAX_BYTES = 64 * 1024 * 1024


def key_for(name: str) -> str:
    """The label of an input in reports and COCO (`file_name` fallback): the name less its
    extension.  Storage names come from `layout`, never from this."""
    stem, ext = posixpath.splitext(name)
    return stem if ext else name


def raster_pair(name: str) -> tuple[str, str]:
    """(mask, legend) names of the raster export pair `name` would belong to: `<key>.png`
    beside `<key>.json`, or the guide's own file names, `url.png` beside `legend.json`."""
    folder, base = posixpath.split(name)
    if base.lower() in {"url.png", "legend.json"}:
        return posixpath.join(folder, "url.png"), posixpath.join(folder, "legend.json")
    key = key_for(name)
    return key + ".png", key + ".json"


def skip_reason(name: str, metadata: Mapping[str, str] | None = None) -> str | None:
    """Why an object is not an export to convert, or None.  One log line says it."""
    base = posixpath.basename(name)
    if metadata and metadata.get(OUTPUT_MARKER):
        return "written by gtcoco"
    if layout.is_output_name(name):
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
    prefix: str = ""  # where this input's outputs are (layout.input_prefix)
    outputs: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None


@dataclass(frozen=True)
class ParsedJob:
    subkey: str  # "" for a single job, else the reference id (or position) in a batch
    job: Job | None
    error: ConversionError | None = None
    segment: str = ""  # its folder under `jobs/` (layout.job_segment); "" for a single job


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
        refs: list[str | None] = []
        for pointer, item in items:
            try:
                job, error = parse_job(item, pointer, self.limits), None
            except ConversionError as exc:
                job, error = None, exc
            refs.append((job.reference_id if job else _loose_reference(item)) if batch else None)
            out.append(ParsedJob("", job, error))
        if not batch:
            return out
        counts: dict[str | None, int] = {}
        for ref in refs:
            counts[ref] = counts.get(ref, 0) + 1
        return [
            ParsedJob(
                ref or str(position),
                item.job,
                item.error,
                layout.job_segment(ref, position, counts[ref] > 1),
            )
            for position, (ref, item) in enumerate(zip(refs, out, strict=True))
        ]

    # -- converting ---------------------------------------------------------------------

    def image_size(
        self,
        job: Job,
        mask_size: tuple[int, int] | None,
        relative_to: str,
        frames: Mapping[str, ImageSize],
    ) -> ImageSize:
        """The job's own image size: explicit fields, else the mask's, else the header of
        the first image URL that answers (`image_url_original`, then `image_url`), else its
        first frame's (`frames`: each frame's size, from `frame_sizes`)."""
        if job.width and job.height:
            return ImageSize(job.width, job.height, "explicit")
        if mask_size is not None:
            return ImageSize(mask_size[0], mask_size[1], "mask")
        urls = [
            (url, pointer_join(job.pointer, key))
            for url, key in (
                (job.image_url_original, "image_url_original"),
                (job.image_url, "image_url"),
            )
            if url
        ]
        if not urls and job.frames:
            return frames[job.frames[0].frame_id]
        return self._header_size(urls, relative_to, pointer_join(job.pointer, "image_url"))

    def frame_sizes(self, job: Job, relative_to: str) -> dict[str, ImageSize]:
        """Every frame's own size (frames of one job may differ): its explicit fields, else
        the job's, else its own header (`src_original`, then `src`).  Headers are read
        concurrently, a bounded pool per job: they are the slow part of a long video."""
        known: dict[str, ImageSize] = {}
        todo = []
        for frame in job.frames:
            if frame.width and frame.height:
                known[frame.frame_id] = ImageSize(frame.width, frame.height, "explicit")
            elif job.width and job.height:
                known[frame.frame_id] = ImageSize(job.width, job.height, "explicit")
            else:
                todo.append(frame)
        if todo:
            workers = min(FRAME_HEADER_WORKERS, len(todo))
            with ThreadPoolExecutor(workers, thread_name_prefix="frame-size") as pool:
                sizes = list(
                    pool.map(
                        lambda f: self._header_size(
                            f.urls(), relative_to, pointer_join(f.pointer, "src")
                        ),
                        todo,
                    )
                )
            known.update((f.frame_id, size) for f, size in zip(todo, sizes, strict=True))
        return known

    def _header_size(
        self, urls: list[tuple[str, str]], relative_to: str, missing_pointer: str
    ) -> ImageSize:
        failures = []
        for url, pointer in urls:
            try:
                w, h, _ = size_from_chunks(
                    self.reader.chunks(url, relative_to), self.limits.header_max_bytes
                )
                return ImageSize(w, h, "header", url)
            except ConversionError as exc:
                failures.append(f"{pointer.rsplit('/', 1)[-1]}: {exc.message}")
        detail = "; ".join(failures) or "no width/height, mask or image URL in the job"
        raise ConversionError(
            "image_size_unavailable",
            f"cannot learn the image size ({detail})",
            urls[0][1] if urls else missing_pointer,
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
        frames = self.frame_sizes(job, relative_to) if job.frames else {}
        size = self.image_size(
            job, None if mask is None else (mask.width, mask.height), relative_to, frames
        )
        if mask is not None and size.width * size.height > self.limits.max_mask_pixels:
            # The mask is scaled to the image: the scaled raster is what gets allocated.
            raise TooLargeError(
                "mask_too_large",
                f"the mask would be scaled to {size.width}x{size.height} = "
                f"{size.width * size.height} pixels, limit {self.limits.max_mask_pixels}",
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
        labels = job.labels + sorted({e.label for e in entries or []})
        ids = self.registry.ensure(sorted(set(labels)))
        builder = convert_vector_job(job, size, ids, self.options, key, self.limits, frames)
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
            **(
                {
                    "frames": [
                        {
                            "frame_id": f,
                            "width": s.width,
                            "height": s.height,
                            "size_source": s.source,
                        }
                        for f, s in frames.items()
                    ]
                }
                if frames
                else {}
            ),
            "options": self.options.as_dict(),
            "counts": converted.counts,
            "notes": [n.as_dict() for n in converted.notes],
        }
        if converted.ignored_keys:
            report["ignored_keys"] = converted.ignored_keys
        if raster_stats is not None:
            report["raster"] = raster_stats
        return JobOutput(key, files, converted.coco, report)

    def _read_mask(self, spec: RasterSpec, relative_to: str) -> bytes:
        assert spec.url is not None
        try:
            return self.reader.read_all(spec.url, relative_to)
        except ConversionError as exc:
            raise exc.at(pointer_join(spec.pointer, "url")) from None


def _loose_reference(item: Any) -> str | None:
    """A bad job's reference id, if one can be seen, so its error gets a stable name."""
    if isinstance(item, dict):
        for holder in (item, item.get("meta"), item.get("build"), item.get("data")):
            if isinstance(holder, dict) and isinstance(holder.get("reference_id"), (str, int)):
                return str(holder["reference_id"])
    return None


def error_document(
    sources: list[dict[str, Any]], key: str, error: ConversionError
) -> dict[str, Any]:
    return {
        "converter": CONVERTER,
        "key": key,
        "status": "failed",
        "source": sources[0],
        "sources": sources,
        "error": error.as_dict(),
    }


def _generations(sources: list[dict[str, Any]]) -> dict[str, int]:
    out = {}
    for src in sources:
        if isinstance(src, dict) and src.get("generation") is not None:
            try:
                out[str(src.get("name"))] = int(src["generation"])
            except (TypeError, ValueError):
                continue
    return out


def newer(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether sources `a` hold a later generation of some object than sources `b` do."""
    gb = _generations(b)
    return any(name in gb and gen > gb[name] for name, gen in _generations(a).items())


def older(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> bool:
    """Superseded: `theirs` is newer somewhere and `ours` nowhere.  (Mixed pairs, each newer
    in one member, are not superseded: every attempt re-reads the other member live.)"""
    return newer(theirs, ours) and not newer(ours, theirs)


@dataclass(frozen=True)
class Marker:
    """A report, error or lock found in the output store, with its object generation."""

    name: str
    doc: dict[str, Any]
    generation: int

    @property
    def sources(self) -> list[dict[str, Any]]:
        found = self.doc.get("sources")
        return found if isinstance(found, list) else []


class _Superseded(Exception):
    pass


class _InProgress(Exception):
    pass


# A plan yields (object name, bytes) for every output file, then returns the completion
# marker (report or error) with the outcome; the marker is written after every file.
PlanResult = tuple[str, dict[str, Any], "Outcome"]
Plan = Generator[tuple[str, bytes], None, PlanResult]
# Room under an input's prefix for the longest name a batch job writes.
_LONGEST_BATCH_FILE = f"jobs/~{10**7}/{layout.LONGEST_FILE}"


class Pipeline:
    """One input object -> its outputs in the output store (SPEC §3, §6).

    Newest generation wins: an event whose generation is not the live one is skipped; the
    writes of one input's outputs happen under a lease (`lock.json` in its prefix, created
    with a does-not-exist precondition), so two generations never interleave their writes; a
    writer holding sources older than a report or lock it finds stops.  The completion
    marker (report or error) of the previous run is deleted before the first write and the
    new one written after the last, and files the new run did not write are removed, so a
    report only ever lists files its own generation wrote.
    """

    def __init__(
        self,
        source: ObjectStore,
        out: ObjectStore,
        converter: Converter,
        lease_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.out, self.converter = source, out, converter
        self.lease_s = converter.config.lock_lease_s if lease_s is None else lease_s
        self.clock = clock

    # -- entry ---------------------------------------------------------------------------

    def process(self, ref: SourceRef) -> Outcome:
        key = key_for(ref.name)
        reason = skip_reason(ref.name, ref.metadata)
        if reason is None and ref.size == 0:
            reason = "empty object"
        if reason:
            return Outcome("skipped", key, reason)
        try:
            return self._process(ref, key)
        except NotFound:
            return Outcome("skipped", key, "the object (or this generation of it) is gone")
        except _Superseded as exc:
            return Outcome("skipped", key, f"superseded: {exc}")
        except _InProgress as exc:
            return Outcome("duplicate", key, str(exc))
        except AccessDenied as exc:
            # Our own buckets refusing us is the deployment's fault, never the input's.
            raise ConfigurationError(
                f"storage refused access to {exc}: check the service account's roles"
            ) from exc

    def _process(self, ref: SourceRef, key: str) -> Outcome:
        is_mask = ref.name.lower().endswith(".png")
        place = Place(layout.input_prefix(raster_pair(ref.name)[1] if is_mask else ref.name))
        sources = [ref.as_dict()]
        if not layout.fits(place.prefix, _LONGEST_BATCH_FILE):
            size = len(ref.name.encode("utf-8", "surrogatepass"))
            error = ConversionError(
                "name_too_long",
                f"the object name is {size} bytes: its output names would pass the "
                f"{layout.MAX_NAME_BYTES}-byte limit of object names; use a shorter name",
            )
            place = Place(layout.long_name_prefix(ref.name))
            return self._persist(place, key, sources, self._error_plan(place, key, sources, error))
        if ref.generation is not None:
            live = self.source.stat(ref.name)
            if live is None:
                return Outcome("skipped", key, "the object is gone", prefix=place.prefix)
            if live.generation != ref.generation:
                raise _Superseded(f"generation {ref.generation} is not the live {live.generation}")
            found = self._marker(place)
            if found is not None and older(sources, found.sources):
                raise _Superseded(f"{found.name} is of a newer generation")
            if (
                found is not None
                and _generations(sources).items() <= _generations(found.sources).items()
            ):
                return Outcome(
                    "duplicate", key, "this generation was already converted", prefix=place.prefix
                )
        try:
            plan = self._plan(ref, key, place, sources)
        except ConversionError as exc:
            plan = self._error_plan(place, key, sources, exc)
        if isinstance(plan, Outcome):
            return plan
        return self._persist(place, key, sources, plan)

    # -- what to write -------------------------------------------------------------------

    def _plan(
        self, ref: SourceRef, key: str, place: Place, sources: list[dict[str, Any]]
    ) -> Outcome | Plan:
        """Read the input (and its pair) and say what to write; `sources` is completed here."""
        limit = self.converter.limits.max_object_bytes
        if ref.size is not None and ref.size > limit:
            raise TooLargeError("object_too_large", f"object is {ref.size} bytes, limit {limit}")
        data = self.source.read(ref.name, ref.generation)
        if not data:
            return Outcome("skipped", key, "empty object")
        if len(data) > limit:
            raise TooLargeError("object_too_large", f"object is {len(data)} bytes, limit {limit}")
        if ref.name.lower().endswith(".png"):
            legend_name = raster_pair(ref.name)[1]
            legend_ref = self._pair(ref, legend_name)
            if legend_ref is None:
                return Outcome("waiting", key, f"mask waits for its legend {legend_name}")
            sources[:] = [ref.as_dict(), legend_ref.as_dict()]
            legend_doc = self.converter.load(
                self.source.read(legend_ref.name, legend_ref.generation), legend_ref.name
            )
            if not is_bare_legend(legend_doc):
                return Outcome(
                    "skipped",
                    key,
                    f"{legend_name} is not a legend; the PNG is not a raster export pair",
                )
            return self._pair_plan(legend_doc, data, key, place, sources)
        doc = self.converter.load(data, ref.name)
        if is_bare_legend(doc):
            mask_name = raster_pair(ref.name)[0]
            mask_ref = self._pair(ref, mask_name)
            if mask_ref is None:
                return Outcome("waiting", key, f"legend waits for its mask {mask_name}")
            sources[:] = [mask_ref.as_dict(), ref.as_dict()]
            mask = self.source.read(mask_ref.name, mask_ref.generation)
            return self._pair_plan(doc, mask, key, place, sources)
        parsed = self.converter.parse(doc)
        if len(parsed) == 1 and parsed[0].subkey == "":
            item = parsed[0]
            if item.error is not None:
                raise item.error
            assert item.job is not None
            job = item.job
            return self._job_plan(
                place, key, sources, lambda: self.converter.convert(job, key, relative_to=ref.name)
            )
        return self._batch_plan(parsed, key, place, ref, sources)

    def _pair(self, ref: SourceRef, other: str) -> SourceRef | None:
        info = self.source.stat(other)
        if info is None:
            return None
        return SourceRef(ref.bucket, info.name, info.generation, info.size, info.metadata)

    def _pair_plan(
        self, legend_doc: Any, mask: bytes, key: str, place: Place, sources: list[dict[str, Any]]
    ) -> Plan:
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
        return self._job_plan(
            place, key, sources, lambda: self.converter.convert(job, key, mask_bytes=mask)
        )

    def _job_files(
        self, place: Place, output: JobOutput, sources: list[dict[str, Any]]
    ) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
        files = [(place / rel, output.files[rel]) for rel in sorted(output.files)]
        report = {
            **output.report,
            "prefix": place.prefix,
            "source": sources[0],
            "sources": sources,
            "outputs": [name for name, _ in files],
        }
        output.report = report
        return files, report

    def _job_plan(
        self,
        place: Place,
        key: str,
        sources: list[dict[str, Any]],
        convert: Callable[[], JobOutput],
    ) -> Plan:
        try:
            output = convert()
        except ConversionError as exc:
            return (yield from self._error_plan(place, key, sources, exc))
        files, report = self._job_files(place, output, sources)
        yield from files
        outcome = Outcome(
            "converted",
            key,
            outputs=[*report["outputs"], place.report],
            report=report,
            prefix=place.prefix,
        )
        return place.report, report, outcome

    def _error_plan(
        self, place: Place, key: str, sources: list[dict[str, Any]], exc: ConversionError
    ) -> Plan:
        doc = error_document(sources, key, exc)
        outcome = Outcome(
            "failed", key, exc.message, outputs=[place.error], errors=[doc], prefix=place.prefix
        )
        return place.error, doc, outcome
        yield  # a generator that writes nothing before its marker

    def _batch_plan(
        self,
        parsed: list[ParsedJob],
        key: str,
        place: Place,
        ref: SourceRef,
        sources: list[dict[str, Any]],
    ) -> Plan:
        jobs: list[dict[str, Any]] = []
        outputs: list[str] = []
        errors: list[dict[str, Any]] = []
        for position, item in enumerate(parsed):
            job_key = f"{key}/{item.subkey}"
            job_place = place.job(item.segment)
            try:
                if not layout.fits(job_place.prefix):
                    job_place = place.job(layout.job_segment(None, position, False))
                    raise ConversionError(
                        "name_too_long",
                        "the reference id is too long for an object name; the job's "
                        f"error is filed under its position {position}",
                        f"/{position}",
                    )
                if item.error is not None:
                    raise item.error
                assert item.job is not None
                output = self.converter.convert(item.job, job_key, relative_to=ref.name)
            except ConversionError as exc:
                doc = error_document(sources, job_key, exc)
                yield job_place.error, dump_json(doc)
                outputs.append(job_place.error)
                errors.append(doc)
                jobs.append(
                    {
                        "key": job_key,
                        "prefix": job_place.prefix,
                        "status": "failed",
                        "error": exc.as_dict(),
                    }
                )
                continue
            files, report = self._job_files(job_place, output, sources)
            yield from files
            yield job_place.report, dump_json(report)
            outputs += [*report["outputs"], job_place.report]
            jobs.append(
                {
                    "key": job_key,
                    "prefix": job_place.prefix,
                    "status": "converted",
                    "annotations": report["counts"]["annotations"],
                }
            )
        status = "converted" if not errors else ("partial" if len(errors) < len(jobs) else "failed")
        batch_report = {
            "converter": CONVERTER,
            "key": key,
            "prefix": place.prefix,
            "status": status,
            "source": sources[0],
            "sources": sources,
            "jobs": jobs,
            "outputs": sorted(outputs),
        }
        outcome = Outcome(
            status,
            key,
            outputs=[*outputs, place.report],
            errors=errors,
            report=batch_report,
            prefix=place.prefix,
        )
        return place.report, batch_report, outcome

    # -- writing -------------------------------------------------------------------------

    def _read_marker(self, name: str) -> Marker | None:
        found = self.out.read_if_exists(name)
        if found is None:
            return None
        try:
            doc = load_json(found[0], 16, MARKER_MAX_BYTES)
        except ConversionError:
            doc = None
        # A marker gtcoco did not write (or a torn one) counts as none: it is replaced.
        return Marker(name, doc if isinstance(doc, dict) else {}, found[1])

    def _marker(self, place: Place) -> Marker | None:
        for name in (place.report, place.error):
            found = self._read_marker(name)
            if found is not None:
                return found
        return None

    def _acquire(self, place: Place, sources: list[dict[str, Any]]) -> int:
        name = place / layout.LOCK
        for _ in range(5):
            doc = {"sources": sources, "expires": round(self.clock() + self.lease_s, 3)}
            try:
                return self.out.write(
                    name, dump_json(doc), "application/json", if_generation_match=0
                )
            except PreconditionFailed:
                pass
            held = self._read_marker(name)
            if held is None:
                continue
            if older(sources, held.sources):
                raise _Superseded(f"a newer generation holds {name}")
            expires = held.doc.get("expires")
            live = isinstance(expires, (int, float)) and expires > self.clock()
            ours = _generations(sources)
            if live and ours and ours == _generations(held.sources):
                # A redelivery of the event being converted: the holder's own delivery
                # answers for it (and is retried by the platform if it fails).
                raise _InProgress(f"another delivery of this generation holds {name}")
            if live:
                raise TransientError(
                    f"{place.prefix} is being written by another event until "
                    f"{expires:.0f} (lease); the platform retries this one later"
                )
            # The holder died without releasing: take the expired lease over.
            with contextlib.suppress(PreconditionFailed, NotFound):
                self.out.delete(name, if_generation_match=held.generation)
        raise TransientError(f"the lease on {place.prefix} stayed contended")

    def _release(self, place: Place, generation: int) -> None:
        try:
            self.out.delete(place / layout.LOCK, if_generation_match=generation)
        except (PreconditionFailed, NotFound):
            pass  # taken over after expiry: that writer releases it
        except GtcocoError as exc:
            log.warning("lease on %s not released (it expires by itself): %s", place.prefix, exc)

    def _persist(
        self, place: Place, key: str, sources: list[dict[str, Any]], plan: Plan
    ) -> Outcome:
        lock = self._acquire(place, sources)
        try:
            found = self._marker(place)  # again, now that no one else writes here
            if found is not None and older(sources, found.sources):
                raise _Superseded(f"{found.name} is of a newer generation")
            if (
                found is not None
                and _generations(sources)
                and _generations(sources) == _generations(found.sources)
            ):
                return Outcome(
                    "duplicate", key, "this generation was already converted", prefix=place.prefix
                )
            for name in (place.report, place.error):
                self.out.delete(name)
            written: set[str] = set()
            while True:
                try:
                    name, data = next(plan)
                except StopIteration as stop:
                    result: PlanResult = stop.value
                    final, doc, outcome = result
                    break
                self.out.write(name, data, content_type_for(name))
                written.add(name)
            keep = written | {final, place / layout.LOCK}
            for name in self.out.list(place.prefix + "/"):
                if name not in keep:
                    self.out.delete(name)
            self.out.write(final, dump_json(doc), "application/json")
            return outcome
        finally:
            self._release(place, lock)
