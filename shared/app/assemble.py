"""`gtcoco assemble`: converted outputs (folders or `gs://` prefixes) -> one COCO dataset.

    sources ─► completed job reports (sorted listing) ─► read coco/legend/instances (pool)
            ─► per split: images and annotations spooled to disk, panoptic PNGs written
            ─► instances_/keypoints_/panoptic_<split>.json streamed from the spools
            ─► images/<split>/ copied (pool) ─► dataset.json, last

Memory is the jobs being read (a window of the pool) plus the names already given (for
uniqueness) and the categories: the annotations and images of a split are spooled to local
files and streamed into their COCO file, never held together.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import cv2
import numpy as np

from shared import __version__
from shared.app import layout
from shared.coco import dataset as ds
from shared.errors import BadRequest, ConversionError, GtcocoError
from shared.io.fetch import UrlReader
from shared.io.storage import ObjectStore
from shared.jsonio import dump_json
from shared.raster.pngwrite import encode_rgb_png

log = logging.getLogger("gtcoco")
T = TypeVar("T")
R = TypeVar("R")

DATASET = "dataset.json"
KINDS = ("instances", "keypoints", "panoptic")


def _line(doc: Any) -> bytes:
    """One canonical JSON line (gtcoco's canonical bytes, without the newline)."""
    return dump_json(doc)[:-1]


@dataclass(frozen=True)
class Source:
    uri: str
    store: ObjectStore


@dataclass
class JobData:
    """One converted job, as read from its outputs."""

    source: int  # index in the sources
    key: str
    inputs: list[dict[str, Any]]
    coco: dict[str, Any]
    store: ObjectStore
    folder: str
    legend: dict[str, Any] | None = None
    extras: dict[str, Any] | None = None


@dataclass(frozen=True)
class PanopticJob:
    """A segmentation job's panoptic entry, made once the dataset knows which classes are
    things (a class is one if any job shows an instance of it)."""

    store: ObjectStore
    folder: str
    key: str
    split: str
    image: dict[str, Any]
    image_id: int
    file_name: str
    boxes: dict[int, list[float]]
    legend: dict[str, Any]  # read once, with the job


@dataclass
class _Spool:
    """A split's lines of one array, on disk until the split's file is written."""

    file: IO[bytes]
    count: int = 0

    def add(self, doc: Any) -> None:
        self.file.write(_line(doc) + b"\n")
        self.count += 1

    def lines(self) -> Iterator[bytes]:
        self.file.flush()
        self.file.seek(0)
        for raw in self.file:
            yield raw.rstrip(b"\n")


@dataclass
class _Split:
    name: str
    spool_dir: Path
    images: _Spool = field(init=False)
    instances: _Spool = field(init=False)
    keypoints: _Spool = field(init=False)
    panoptic: _Spool = field(init=False)
    panoptic_images: _Spool = field(init=False)
    extras: _Spool = field(init=False)
    categories: dict[str, dict[int, int]] = field(default_factory=dict)

    PARTS = ("images", "instances", "keypoints", "panoptic", "panoptic_images", "extras")

    def __post_init__(self) -> None:
        for part in self.PARTS:
            path = self.spool_dir / f"{self.name}.{part}.jsonl"
            setattr(self, part, _Spool(path.open("w+b")))

    def close(self) -> None:
        for part in self.PARTS:
            getattr(self, part).file.close()


@dataclass(frozen=True)
class ImageCopy:
    url: str
    target: str


@dataclass
class Listing:
    """The job reports of every source (one string of names a source), and the failed
    jobs (their `error.json`) counted on the way."""

    per_source: list[str] = field(default_factory=list)
    total: int = 0
    failed_jobs: int = 0

    def reports(self) -> Iterator[tuple[int, str]]:
        """(source index, report name), in the dataset's order."""
        for index, reports in enumerate(self.per_source):
            for name in _lines(reports):
                yield index, name


@dataclass
class Result:
    dataset: dict[str, Any]
    copy_failures: list[dict[str, str]]


def ordered(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """`fn` over `items` on the pool, results in order, at most `window` in flight."""
    ahead: list[Future[R]] = []
    for item in items:
        ahead.append(pool.submit(fn, item))
        if len(ahead) >= window:
            yield ahead.pop(0).result()
    for future in ahead:
        yield future.result()


class Assembler:
    def __init__(
        self,
        out: ObjectStore,
        reader_for: Callable[[tuple[str, ...]], UrlReader],
        pool: ThreadPoolExecutor,
        window: int,
        progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
    ) -> None:
        self.out, self.reader_for, self.pool, self.window = out, reader_for, pool, window
        self.progress = progress

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def job_reports(store: ObjectStore) -> tuple[list[str], int]:
        """Every job report under a source, in listing order, and how many jobs failed
        (their `error.json`): only reports mark a job whose outputs are complete."""
        reports, failed = [], 0
        for name in store.list("", ("/" + layout.REPORT, "/" + layout.ERROR)):
            if name.startswith(("_registry/", f"{layout.LONG_NAMES}/")):
                if name.endswith("/" + layout.ERROR):
                    failed += 1
                continue
            base = posixpath.basename(name)
            if base == layout.REPORT:
                reports.append(name)
            elif base == layout.ERROR:
                failed += 1
        return reports, failed

    def read_job(self, item: tuple[int, ObjectStore, str]) -> JobData | None:
        index, store, report_name = item
        report = json.loads(store.read(report_name))
        if "jobs" in report or report.get("status") != "converted":
            return None  # a batch's own report: its jobs have theirs
        folder = posixpath.dirname(report_name)
        outputs = set(report.get("outputs", []))
        coco = json.loads(store.read(posixpath.join(folder, "coco.json")))
        legend = None
        legend_name = posixpath.join(folder, "masks", "legend.json")
        if legend_name in outputs:
            legend = json.loads(store.read(legend_name))
        extras_name = posixpath.join(folder, "extras.json")
        extras = json.loads(store.read(extras_name)) if extras_name in outputs else None
        sources = report.get("sources") or [report.get("source") or {}]
        return JobData(index, str(report["key"]), sources, coco, store, folder, legend, extras)

    # -- the run ---------------------------------------------------------------------------

    def listing(self, sources: list[Source]) -> Listing:
        """Every job report of the sources, in the order the dataset takes them."""
        # Each source's report names as one string (a list of 100,000 names costs twice it);
        # output names never hold a newline (the layout percent-encodes it).
        listing = Listing()
        for source in sources:
            reports, failed = self.job_reports(source.store)
            listing.failed_jobs += failed
            listing.total += len(reports)
            listing.per_source.append("\n".join(reports))
            del reports
        return listing

    def run(
        self,
        sources: list[Source],
        splits: tuple[tuple[str, float], ...],
        images: str,
        name: str,
        listing: Listing | None = None,
    ) -> Result:
        listing = self.listing(sources) if listing is None else listing
        listed = ((index, sources[index].store, report) for index, report in listing.reports())
        jobs = ordered(self.pool, self.read_job, listed, self.window)
        return self.collect(sources, jobs, listing.total, listing.failed_jobs, splits, images, name)

    def collect(
        self,
        sources: list[Source],
        jobs: Iterable[JobData | None],
        total: int,
        failed_jobs: int,
        splits: tuple[tuple[str, float], ...],
        images: str,
        name: str,
    ) -> Result:
        """The dataset from its jobs, in listing order (read here, or by the map tasks of
        a sharded assembly: the same jobs give the same bytes)."""
        categories = self._categories(sources)
        names = ds.FileNames()
        seen_keys: set[bytes] = set()  # digests: a few dozen bytes a job
        inputs: dict[tuple[str, str], int] = {}
        copies: list[ImageCopy] = []
        panoptic: list[PanopticJob] = []
        skipped: list[dict[str, str]] = []
        per_source = [0] * len(sources)
        with tempfile.TemporaryDirectory(prefix="gtcoco-assemble-") as tmp:
            state = {n: _Split(n, Path(tmp)) for n, _ in splits}
            try:
                for done, job in enumerate(jobs, start=1):
                    self.progress("reading jobs", done, total)
                    if job is None:
                        continue
                    digest = ds.key_digest(job.key)
                    if digest in seen_keys:
                        skipped.append({"key": job.key, "reason": "the same key in two sources"})
                        continue
                    seen_keys.add(digest)
                    per_source[job.source] += 1
                    for entry in job.inputs:
                        ident = (str(entry.get("bucket", "")), str(entry.get("name", "")))
                        gen = entry.get("generation")
                        inputs[ident] = max(inputs.get(ident, 0), int(gen or 0))
                    categories.learn(job.coco)
                    categories.things |= ds.things_of(job.coco, job.legend)
                    split = state[ds.split_of(job.key, splits)]
                    self._add_job(job, split, names, copies if images == "copy" else None, panoptic)
                self._panoptic(panoptic, state, categories.things)
                for split in state.values():
                    self._write_split(split, categories, name)
                # Images may come from the buckets the exports came from, as at conversion.
                exported_from = tuple(sorted({b for b, _ in inputs if b}))
                reader = self.reader_for(exported_from)
                failures = self._copy_images(copies, reader) if copies else []
                doc = self._dataset_doc(
                    name,
                    sources,
                    per_source,
                    splits,
                    state,
                    categories,
                    inputs,
                    failed_jobs,
                    skipped,
                    images,
                    len(copies),
                    failures,
                )
            finally:
                for split in state.values():
                    split.close()
        # Last: its presence says every other file of the dataset is written.
        self.out.write(DATASET, dump_json(doc), "application/json")
        return Result(doc, failures)

    def _categories(self, sources: list[Source]) -> ds.Categories:
        categories = ds.Categories({})
        for source in sources:
            found = source.store.read_if_exists(layout.REGISTRY)
            if found is not None:
                categories.learn(json.loads(found[0]))
        return categories

    def _add_job(
        self,
        job: JobData,
        split: _Split,
        names: ds.FileNames,
        copies: list[ImageCopy] | None,
        panoptic: list[PanopticJob],
    ) -> None:
        coco = job.coco
        frames = len(coco["images"]) > 1
        image_ids: dict[int, tuple[int, str]] = {}
        for position, image in enumerate(coco["images"]):
            file_name = names.claim(
                ds.image_path(image, job.key, position if frames else None), job.key
            )
            image_id = split.images.count + 1
            split.images.add(ds.dataset_image(image, image_id, file_name, job.key))
            image_ids[int(image["id"])] = (image_id, file_name)
            url = image.get("image_url")
            if copies is not None and isinstance(url, str) and url:
                copies.append(ImageCopy(url, f"images/{split.name}/{file_name}"))
        for ann in coco["annotations"]:
            image_id = image_ids[int(ann["image_id"])][0]
            kind = "keypoints" if ds.is_keypoints(ann) else "instances"
            spool = split.keypoints if kind == "keypoints" else split.instances
            spool.add(ds.renumbered(ann, image_id, spool.count + 1))
            counted = split.categories.setdefault(kind, {})
            cid = int(ann["category_id"])
            counted[cid] = counted.get(cid, 0) + 1
        if job.extras:
            self._add_extras(job, split, image_ids)
        if job.legend is not None and len(coco["images"]) == 1:
            (image,) = coco["images"]
            image_id, file_name = image_ids[int(image["id"])]
            boxes = {int(a["id"]): a["bbox"] for a in coco["annotations"]}
            panoptic.append(
                PanopticJob(
                    job.store,
                    job.folder,
                    job.key,
                    split.name,
                    image,
                    image_id,
                    file_name,
                    boxes,
                    job.legend,
                )
            )

    @staticmethod
    def _add_extras(job: JobData, split: _Split, image_ids: dict[int, tuple[int, str]]) -> None:
        """Lines and cuboids (shapes COCO cannot hold) to `extras_<split>.json`, by the
        dataset's image id: a frame's by its `frame_id`, a single image's by its own."""
        assert job.extras is not None
        frames = {str(i.get("frame_id")): image_ids[int(i["id"])][0] for i in job.coco["images"]}
        only = next(iter(image_ids.values()))[0] if len(image_ids) == 1 else None
        for kind in ("lines", "cuboids"):
            for gt_id, entry in sorted((job.extras.get(kind) or {}).items()):
                image_id = frames.get(str(entry.get("frame_id")), only)
                if image_id is None:
                    continue  # a frame the job's COCO does not list: kept in its extras.json
                split.extras.add(
                    {
                        "image_id": image_id,
                        "type": kind[:-1],
                        "gt_id": gt_id,
                        "key": job.key,
                        **{
                            k: v
                            for k, v in entry.items()
                            if k in {"label", "points", "bbox", "attributes", "track_id"}
                        },
                    }
                )

    def _panoptic(
        self, jobs: list[PanopticJob], state: dict[str, _Split], things: set[int]
    ) -> None:
        def make(job: PanopticJob) -> tuple[PanopticJob, str, list[dict[str, Any]]]:
            raw = job.store.read(posixpath.join(job.folder, "masks", "instances.png"))
            decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
            if decoded is None or decoded.ndim != 2:
                raise ConversionError(
                    "invalid_instances_mask", f"{job.key}: masks/instances.png is not one channel"
                )
            rgb, segments = ds.panoptic_segments(decoded, job.legend, job.boxes, things)
            png = ds.panoptic_name(job.file_name)
            self.out.write(
                f"annotations/panoptic_{job.split}/{png}", encode_rgb_png(rgb), "image/png"
            )
            return job, png, segments

        for done, (job, png, segments) in enumerate(
            ordered(self.pool, make, jobs, self.window), start=1
        ):
            self.progress("panoptic masks", done, len(jobs))
            split = state[job.split]
            split.panoptic.add(
                {"image_id": job.image_id, "file_name": png, "segments_info": segments}
            )
            split.panoptic_images.add(
                ds.dataset_image(job.image, job.image_id, job.file_name, job.key)
            )

    # -- writing ---------------------------------------------------------------------------

    def _write_split(self, split: _Split, categories: ds.Categories, name: str) -> None:
        info = _line(ds.info_block(name, split.name))
        totals = categories.keypoints

        def keypoint_lines() -> Iterator[bytes]:
            for raw in split.keypoints.lines():
                ann = json.loads(raw)
                yield _line(ds.padded_keypoints(ann, totals.get(int(ann["category_id"]), 0)))

        files = {
            "instances": (split.instances.lines(), categories.instances_list(), split.images),
            "keypoints": (keypoint_lines(), categories.keypoints_list(), split.images),
            "panoptic": (split.panoptic.lines(), categories.panoptic_list(), split.panoptic_images),
        }
        with tempfile.NamedTemporaryFile(dir=split.spool_dir, suffix=".json") as f:
            f.write(b'{"extras":[')
            _join(f, split.extras.lines())
            f.write(b'],"info":' + info + b"}\n")
            f.flush()
            self.out.write_file(
                f"annotations/extras_{split.name}.json", Path(f.name), "application/json"
            )
        for kind, (lines, cats, images) in files.items():
            with tempfile.NamedTemporaryFile(dir=split.spool_dir, suffix=".json") as f:
                # Keys in sorted order, as every other gtcoco JSON file.
                f.write(b'{"annotations":[')
                _join(f, lines)
                f.write(b'],"categories":' + _line(cats) + b',"images":[')
                _join(f, images.lines())
                f.write(b'],"info":' + info + b',"licenses":[]}\n')
                f.flush()
                self.out.write_file(
                    f"annotations/{kind}_{split.name}.json", Path(f.name), "application/json"
                )

    def _copy_images(self, copies: list[ImageCopy], reader: UrlReader) -> list[dict[str, str]]:
        failures: list[dict[str, str]] = []

        def copy(item: ImageCopy) -> dict[str, str] | None:
            try:
                self._copy(item, reader)
            except GtcocoError as exc:  # one image's failure is reported, not fatal
                return {"url": item.url, "target": item.target, "error": str(exc)}
            return None

        for done, failure in enumerate(ordered(self.pool, copy, copies, self.window), start=1):
            self.progress("copying images", done, len(copies))
            if failure is not None:
                failures.append(failure)
        return failures

    def _copy(self, item: ImageCopy, reader: UrlReader) -> None:
        parts = urlsplit(item.url)
        if parts.scheme == "gs" and self.out.can_copy_from_gcs:
            if not reader.fetcher.policy.bucket_allowed(parts.netloc):
                raise BadRequest("url_refused", f"{item.url}: bucket not in the allow-list")
            self.out.copy_from(parts.netloc, parts.path.lstrip("/"), item.target)
            return
        data = b"".join(reader.chunks(item.url, first=1024 * 1024))
        self.out.write(item.target, data, _image_type(item.target))

    def _dataset_doc(
        self,
        name: str,
        sources: list[Source],
        per_source: list[int],
        splits: tuple[tuple[str, float], ...],
        state: dict[str, _Split],
        categories: ds.Categories,
        inputs: dict[tuple[str, str], int],
        failed_jobs: int,
        skipped: list[dict[str, str]],
        images: str,
        copies: int,
        failures: list[dict[str, str]],
    ) -> dict[str, Any]:
        names = categories.names
        return {
            "name": name,
            "converter": {"name": "gtcoco", "version": __version__},
            "split_rule": {
                "splits": dict(splits),
                "rule": "sha256 of the job key, first 8 bytes as a fraction of 2^64, "
                "against the cumulative fractions in the order given",
            },
            "sources": [
                {"uri": s.uri, "jobs": n} for s, n in zip(sources, per_source, strict=True)
            ],
            "inputs": [
                {"bucket": b, "name": n, "generation": g} for (b, n), g in sorted(inputs.items())
            ],
            "splits": {
                split.name: {
                    "images": split.images.count,
                    "instances": split.instances.count,
                    "keypoints": split.keypoints.count,
                    "panoptic_images": split.panoptic.count,
                    "extras": split.extras.count,
                    "annotations_per_category": {
                        kind: {names[c]: n for c, n in sorted(counted.items())}
                        for kind, counted in sorted(split.categories.items())
                    },
                    "files": [f"annotations/{kind}_{split.name}.json" for kind in KINDS]
                    + [f"annotations/extras_{split.name}.json"],
                }
                for split in state.values()
            },
            "categories": len(names),
            "failed_jobs": failed_jobs,
            "skipped_jobs": skipped,
            "images": {"mode": images, "copied": copies - len(failures), "failed": failures},
        }


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` one at a time (`split` would hold them all)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 1


def _join(f: IO[bytes], lines: Iterable[bytes]) -> None:
    first = True
    for raw in lines:
        if not first:
            f.write(b",")
        f.write(raw)
        first = False


def _image_type(name: str) -> str:
    ext = posixpath.splitext(name)[1].lower()
    return {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        ext, "application/octet-stream"
    )
