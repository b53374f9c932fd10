"""One input object -> its outputs, with the failure rules of SPEC §6.

`Pipeline` holds the object-store side of the stages (`stages.Converter`): skip rules, the
output namespace (`layout`), newest-generation-wins, at-least-once de-duplication,
exact-generation reads, error objects, and the report written last so nothing half-written
looks complete.  Files are written concurrently (`persist.Writer`); a job's report waits for
its files, the input's report for everything.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.app import layout
from shared.app.convert import CONVERTER, JobOutput
from shared.app.layout import Place
from shared.app.persist import File, Writer
from shared.app.shards import (
    FANOUT,
    SHARD_ROUTE,
    lock_name,
    merged_report,
    plan_document,
    plan_ranges,
    record_name,
    shard_task,
)
from shared.app.stages import Converter, ParsedJob
from shared.errors import (
    ConfigurationError,
    ConversionError,
    GtcocoError,
    TooLargeError,
    TransientError,
)
from shared.gtstudio.jobs import parse_job
from shared.gtstudio.legend import is_bare_legend
from shared.io.queue import TaskQueue
from shared.io.storage import (
    OUTPUT_MARKER,
    AccessDenied,
    NotFound,
    ObjectStore,
    PreconditionFailed,
)
from shared.jsonio import Chunked, dump_json, load_json
from shared.retry import Backoff, attempts

EXPORT_SUFFIXES = (".json", ".jsonl", ".png")
log = logging.getLogger(__name__)
# Completion markers and locks are small; a larger one was not written by gtcoco.
MARKER_MAX_BYTES = 64 * 1024 * 1024
# A busy lease is retried a few times, spread out, before the event goes back to the
# platform (which retries it later).
LEASE_BACKOFF = Backoff(attempts=5, initial_s=0.05, maximum_s=0.5)
__all__ = ["CONVERTER", "Converter", "JobOutput", "Outcome", "ParsedJob", "Pipeline", "SourceRef"]


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
class Outcome:
    status: str  # converted | partial | failed | skipped | duplicate | waiting
    key: str
    reason: str = ""
    prefix: str = ""  # where this input's outputs are (layout.input_prefix)
    outputs: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None


def _record_fields(part: dict[str, Any] | None) -> dict[str, Any]:
    """What a shard's record keeps of its part of the batch report."""
    assert part is not None
    return {"jobs": part["jobs"], "outputs": part["outputs"]}


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


def _input_place(name: str) -> Place:
    """The output folder of an input: a raster pair's mask writes under its legend's."""
    is_mask = name.lower().endswith(".png")
    return Place(layout.input_prefix(raster_pair(name)[1] if is_mask else name))


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


@dataclass(frozen=True)
class _FanOut:
    """A plan too big for one invocation: `jobs` jobs, converted as Cloud Tasks shards."""

    jobs: int


# A plan yields groups of output files (each a job's files, and its report written after
# them), then returns the completion marker (report or error) with the outcome; the
# marker is written after every file.
PlanResult = tuple[str, dict[str, Any], "Outcome"]
Group = tuple[Sequence[File], File | None]
Plan = Generator[Group, None, PlanResult]
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
        queue: TaskQueue | None = None,
    ) -> None:
        self.source, self.out, self.converter = source, out, converter
        self.lease_s = converter.config.lock_lease_s if lease_s is None else lease_s
        self.clock = clock
        # Where shards of a batch too big for one invocation go; None: every batch is
        # converted in one run.
        self.queue = queue

    # -- entry ---------------------------------------------------------------------------

    def process(self, ref: SourceRef) -> Outcome:
        key = key_for(ref.name)
        reason = skip_reason(ref.name, ref.metadata)
        if reason is None and ref.size == 0:
            reason = "empty object"
        if reason:
            return Outcome("skipped", key, reason)
        return self._guarded(key, lambda: self._process(ref, key))

    def process_shard(self, ref: SourceRef, index: int) -> Outcome:
        """Shard `index` of the fan-out of `ref` (a batch generation): its jobs converted,
        its record written, and the batch report if it is the last shard to finish.  A
        shard another delivery is converting is retried later (TransientError), never
        answered as done: that delivery may yet fail."""
        key = key_for(ref.name)

        def run() -> Outcome:
            try:
                return self._shard(ref, key, index)
            except _InProgress as exc:
                raise TransientError(f"{exc}; this delivery is retried later") from exc

        return self._guarded(key, run)

    def _guarded(self, key: str, run: Callable[[], Outcome]) -> Outcome:
        self.converter.registry.forget()  # ids cached for this input only
        try:
            return run()
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
        place = _input_place(ref.name)
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
        if isinstance(plan, _FanOut):
            assert ref.generation is not None
            return self._fan_out(ref, key, place, sources, plan.jobs)
        return self._persist(place, key, sources, plan)

    # -- what to write -------------------------------------------------------------------

    def _plan(
        self, ref: SourceRef, key: str, place: Place, sources: list[dict[str, Any]]
    ) -> Outcome | Plan | _FanOut:
        """Read the input (and its pair) and say what to write; `sources` is completed here."""
        converter = self.converter
        limit = converter.limits.max_object_bytes
        if ref.size is not None and ref.size > limit:
            raise TooLargeError("object_too_large", f"object is {ref.size} bytes, limit {limit}")
        source = self._source(ref)
        if not source.size:
            return Outcome("skipped", key, "empty object")
        if source.size > limit:
            raise TooLargeError("object_too_large", f"object is {source.size} bytes, limit {limit}")
        if ref.name.lower().endswith(".png"):
            data = source.whole()
            legend_name = raster_pair(ref.name)[1]
            legend_ref = self._pair(ref, legend_name)
            if legend_ref is None:
                return Outcome("waiting", key, f"mask waits for its legend {legend_name}")
            sources[:] = [ref.as_dict(), legend_ref.as_dict()]
            legend_doc = converter.read(
                self.source.read(legend_ref.name, legend_ref.generation), legend_ref.name
            ).doc
            if not is_bare_legend(legend_doc):
                return Outcome(
                    "skipped",
                    key,
                    f"{legend_name} is not a legend; the PNG is not a raster export pair",
                )
            return self._pair_plan(legend_doc, data, key, place, sources)
        document = converter.read(source, ref.name)
        if not document.is_batch and is_bare_legend(document.doc):
            mask_name = raster_pair(ref.name)[0]
            mask_ref = self._pair(ref, mask_name)
            if mask_ref is None:
                return Outcome("waiting", key, f"legend waits for its mask {mask_name}")
            sources[:] = [mask_ref.as_dict(), ref.as_dict()]
            mask = self.source.read(mask_ref.name, mask_ref.generation)
            return self._pair_plan(document.doc, mask, key, place, sources)
        if not document.is_batch:
            return self._job_plan(
                place, key, sources, converter.parse(document), relative_to=ref.name
            )
        if (
            self.queue is not None
            and ref.generation is not None
            and len(document) > converter.config.shard_jobs
        ):
            return _FanOut(len(document))
        return self._batch_plan(converter.parse(document), key, place, ref, sources)

    def _source(self, ref: SourceRef) -> Chunked:
        """The object whole if it fits one chunk, else as ranged reads of its generation
        (a batch is read twice and never held whole)."""
        chunk = self.converter.limits.read_chunk_bytes
        size = ref.size
        if size is None or size <= chunk:
            return Chunked.of(self.source.read(ref.name, ref.generation))

        def chunks() -> Iterator[bytes]:
            for start in range(0, size, chunk):
                yield self.source.read_range(ref.name, start, start + chunk, ref.generation)

        return Chunked(size, chunks)

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
        return self._job_plan(place, key, sources, [ParsedJob("", job)], mask=mask)

    def _job_files(
        self, place: Place, output: JobOutput, sources: list[dict[str, Any]]
    ) -> tuple[list[File], dict[str, Any]]:
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
        jobs: Iterator[ParsedJob] | list[ParsedJob],
        relative_to: str = "",
        mask: bytes | None = None,
    ) -> Plan:
        ((_, result),) = self.converter.run(jobs, key, relative_to, mask=mask)
        if isinstance(result, ConversionError):
            return (yield from self._error_plan(place, key, sources, result))
        files, report = self._job_files(place, result, sources)
        yield files, None
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
        parsed: Iterator[ParsedJob],
        key: str,
        place: Place,
        ref: SourceRef,
        sources: list[dict[str, Any]],
    ) -> Plan:
        jobs: list[dict[str, Any]] = []
        outputs: list[str] = []
        errors: list[dict[str, Any]] = []

        def placed(items: Iterator[ParsedJob]) -> Iterator[ParsedJob]:
            for item in items:
                if layout.fits(place.job(item.segment).prefix):
                    yield item
                    continue
                yield ParsedJob(
                    item.subkey,
                    None,
                    ConversionError(
                        "name_too_long",
                        "the reference id is too long for an object name; the job's "
                        f"error is filed under its position {item.position}",
                        f"/{item.position}",
                    ),
                    layout.job_segment(None, item.position, False),
                    item.position,
                )

        for item, result in self.converter.run(placed(parsed), key, relative_to=ref.name):
            job_key = f"{key}/{item.subkey}"
            job_place = place.job(item.segment)
            if isinstance(result, ConversionError):
                doc = error_document(sources, job_key, result)
                yield [], (job_place.error, dump_json(doc))
                outputs.append(job_place.error)
                errors.append(doc)
                jobs.append(
                    {
                        "key": job_key,
                        "prefix": job_place.prefix,
                        "status": "failed",
                        "error": result.as_dict(),
                    }
                )
                continue
            files, report = self._job_files(job_place, result, sources)
            yield files, (job_place.report, dump_json(report))
            outputs += [*report["outputs"], job_place.report]
            jobs.append(
                {
                    "key": job_key,
                    "prefix": job_place.prefix,
                    "status": "converted",
                    "annotations": report["counts"]["annotations"],
                }
            )
        base = {"converter": CONVERTER, "key": key, "prefix": place.prefix}
        batch_report = merged_report(
            {**base, "source": sources[0], "sources": sources},
            [{"jobs": jobs, "outputs": outputs}],
        )
        outcome = Outcome(
            batch_report["status"],
            key,
            outputs=[*outputs, place.report],
            errors=errors,
            report=batch_report,
            prefix=place.prefix,
        )
        return place.report, batch_report, outcome

    def is_current(self, ref: SourceRef) -> bool:
        """Whether the outputs of `ref` were converted from this generation of it (its
        report or error names it): a backfill has nothing to do for it."""
        place = _input_place(ref.name)
        if not layout.fits(place.prefix, _LONGEST_BATCH_FILE):
            place = Place(layout.long_name_prefix(ref.name))
        found = self._marker(place)
        if found is None:
            return False
        return _generations(found.sources).get(ref.name) == ref.generation

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

    def _acquire(self, place: Place, sources: list[dict[str, Any]], name: str = "") -> int:
        name = name or place / layout.LOCK
        for _ in attempts(LEASE_BACKOFF):
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

    def _release(self, place: Place, generation: int, name: str = "") -> None:
        try:
            self.out.delete(name or place / layout.LOCK, if_generation_match=generation)
        except (PreconditionFailed, NotFound):
            pass  # taken over after expiry: that writer releases it
        except GtcocoError as exc:
            log.warning("lease on %s not released (it expires by itself): %s", place.prefix, exc)

    def _writer(self) -> Writer:
        # Twice the pool: a write queued behind each running one, and no more in memory.
        return Writer(self.out, self.converter.pool, 2 * self.converter.config.io_workers)

    def _settled(self, place: Place, key: str, sources: list[dict[str, Any]]) -> Outcome | None:
        """Under the input's lease: a duplicate outcome if this generation's marker is
        there, `_Superseded` if a newer one's is (or a newer fan-out's), TransientError if
        another generation's fan-out still holds the input."""
        found = self._marker(place)
        if found is not None and older(sources, found.sources):
            raise _Superseded(f"{found.name} is of a newer generation")
        ours = _generations(sources)
        if found is not None and ours and ours == _generations(found.sources):
            return Outcome(
                "duplicate", key, "this generation was already converted", prefix=place.prefix
            )
        fan = self._read_marker(place / FANOUT)
        if fan is None or (ours and ours == _generations(fan.sources)):
            return None
        if older(sources, fan.sources):
            raise _Superseded(f"a fan-out of a newer generation holds {place.prefix}")
        expires = fan.doc.get("expires")
        if isinstance(expires, (int, float)) and expires > self.clock():
            raise TransientError(
                f"{place.prefix} is being converted in shards from another generation until "
                f"{expires:.0f} (fan-out lease); the platform retries this one later"
            )
        return None  # an expired fan-out: this run replaces its plan and its files

    def _write(self, plan: Plan) -> tuple[PlanResult, set[str]]:
        """Every group of `plan` written; its completion marker returned, not written."""
        writer = self._writer()
        while True:
            try:
                files, last = next(plan)
            except StopIteration as stop:
                result: PlanResult = stop.value
                break
            writer.group(files, last)
        writer.drain()
        return result, writer.written

    def _persist(
        self, place: Place, key: str, sources: list[dict[str, Any]], plan: Plan
    ) -> Outcome:
        lock = self._acquire(place, sources)
        try:
            settled = self._settled(place, key, sources)  # again, now no one else writes
            if settled is not None:
                return settled
            for name in (place.report, place.error):
                self.out.delete(name)
            (final, doc, outcome), written = self._write(plan)
            keep = written | {final, place / layout.LOCK}
            for name in self.out.list(place.prefix + "/"):
                if name not in keep:
                    self.out.delete(name)
            self.out.write(final, dump_json(doc), "application/json")
            return outcome
        finally:
            self._release(place, lock)

    # -- fan-out -------------------------------------------------------------------------

    def _fan_out(
        self, ref: SourceRef, key: str, place: Place, sources: list[dict[str, Any]], jobs: int
    ) -> Outcome:
        """Plan the shards and enqueue one task each, under the input's lease.  A
        redelivered event of the same generation enqueues them again: the task names make
        that a no-op, and it heals a fan-out that stopped half-way through enqueuing."""
        assert self.queue is not None and ref.generation is not None
        size = self.converter.config.shard_jobs
        lock = self._acquire(place, sources)
        try:
            settled = self._settled(place, key, sources)
            if settled is not None:
                return settled
            held = self._read_marker(place / FANOUT)
            if held is None or _generations(held.sources) != _generations(sources):
                for name in (place.report, place.error):
                    self.out.delete(name)
                expires = self.clock() + self.converter.config.fanout_lease_s
                plan = plan_document(key, sources, jobs, size, expires)
                self.out.write(place / FANOUT, dump_json(plan), "application/json")
            else:
                plan = held.doc
            ranges = plan_ranges(plan) or []
            enqueued = 0
            for index in range(len(ranges)):
                name, body = shard_task(ref.bucket, ref.name, ref.generation, index)
                enqueued += self.queue.enqueue(name, SHARD_ROUTE, body)
        finally:
            self._release(place, lock)
        return Outcome(
            "fanned_out",
            key,
            f"{jobs} jobs in {len(ranges)} shards of up to {plan['shard_jobs']} "
            f"({enqueued} tasks enqueued now, {len(ranges) - enqueued} queued already)",
            prefix=place.prefix,
            outputs=[place / FANOUT],
        )

    def _shard(self, ref: SourceRef, key: str, index: int) -> Outcome:
        place = _input_place(ref.name)
        sources = [ref.as_dict()]
        live = self.source.stat(ref.name)
        if live is None:
            return Outcome("skipped", key, "the object is gone", prefix=place.prefix)
        if live.generation != ref.generation:
            raise _Superseded(f"generation {ref.generation} is not the live {live.generation}")
        fan = self._read_marker(place / FANOUT)
        if fan is None or _generations(fan.sources) != _generations(sources):
            found = self._marker(place)
            if found is not None and _generations(found.sources) == _generations(sources):
                return Outcome(
                    "duplicate", key, "this generation was already converted", prefix=place.prefix
                )
            return Outcome(
                "skipped",
                key,
                "no fan-out of this generation is in progress (a newer run replaced it)",
                prefix=place.prefix,
            )
        ranges = plan_ranges(fan.doc)
        if ranges is None or not 0 <= index < len(ranges):
            raise ConversionError(
                "invalid_shard",
                f"the fan-out of {ref.name} has {len(ranges or [])} shards; there is no "
                f"shard {index}",
                "/shard",
            )
        record = place / record_name(index)
        of = f"shard {index + 1} of {len(ranges)}"
        if self._has_record(record, sources):  # a repeated task writes nothing, not a lease
            outcome = Outcome("duplicate", key, f"{of} was already converted")
        else:
            lock = self._acquire(place, sources, place / lock_name(index))
            try:
                if self._has_record(record, sources):  # by the lease's previous holder
                    outcome = Outcome("duplicate", key, f"{of} was already converted")
                else:
                    outcome = self._convert_shard(ref, key, place, sources, ranges[index])
                    doc = {"sources": sources, "shard": index, **_record_fields(outcome.report)}
                    self.out.write(record, dump_json(doc), "application/json")
                    outcome.outputs.remove(place.report)
                    outcome.report, outcome.reason = None, of
            finally:
                self._release(place, lock, place / lock_name(index))
        outcome.prefix = place.prefix
        report = self._complete(place, key, sources, len(ranges))
        if report is not None:
            outcome.reason += "; the last to finish: batch report written"
            outcome.outputs.append(place.report)
            outcome.report = report
        return outcome

    def _has_record(self, record: str, sources: list[dict[str, Any]]) -> bool:
        done = self._read_marker(record)
        return done is not None and _generations(done.sources) == _generations(sources)

    def _convert_shard(
        self, ref: SourceRef, key: str, place: Place, sources: list[dict[str, Any]], jobs: range
    ) -> Outcome:
        """The shard's jobs converted and written; its part of the batch report is the
        outcome's `report`."""
        document = self.converter.read(self._source(ref), ref.name)
        plan = self._batch_plan(self.converter.parse(document, jobs), key, place, ref, sources)
        (_, _, outcome), _ = self._write(plan)
        return outcome

    def _complete(
        self, place: Place, key: str, sources: list[dict[str, Any]], shards: int
    ) -> dict[str, Any] | None:
        """The batch report, written if every shard of this generation has its record
        (None: some shard is still to finish, or another shard wrote the report)."""
        wanted = [place / record_name(i) for i in range(shards)]
        if not set(wanted) <= set(self.out.list(place / "shards/")):
            return None
        lock = self._acquire(place, sources)
        try:
            fan = self._read_marker(place / FANOUT)
            if fan is None or _generations(fan.sources) != _generations(sources):
                return None  # completed by another shard, or replaced by a newer run
            records = []
            for name in wanted:
                found = self._read_marker(name)
                if found is None or _generations(found.sources) != _generations(sources):
                    return None  # a stale record of an older fan-out: its shard is to come
                records.append(found.doc)
            base = {"converter": CONVERTER, "key": key, "prefix": place.prefix}
            report = merged_report({**base, "source": sources[0], "sources": sources}, records)
            keep = {*report["outputs"], place.report, place / FANOUT, place / layout.LOCK}
            for name in self.out.list(place.prefix + "/"):
                if name not in keep and not name.startswith(place / "shards/"):
                    self.out.delete(name)  # a file of an older generation
            try:
                self.out.write(
                    place.report, dump_json(report), "application/json", if_generation_match=0
                )
            except PreconditionFailed:
                return None
            for name in [*wanted, place / FANOUT]:
                with contextlib.suppress(NotFound):
                    self.out.delete(name)
            return report
        finally:
            self._release(place, lock)
