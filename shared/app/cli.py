"""`gtcoco convert SRC... --out DST`: the pipeline of the cloud functions, on files or gs://;
`gtcoco assemble SRC... --out DST`: converted outputs -> one COCO dataset."""

from __future__ import annotations

import argparse
import dataclasses
import json
import posixpath
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from shared import __version__
from shared.app.assemble import Source
from shared.app.assemble_shards import run_in_shards
from shared.app.backfill import BackfillResult, enqueue, pending, run_locally
from shared.app.pipeline import Outcome, Pipeline, SourceRef, key_for, raster_pair
from shared.app.runtime import build_assembler, build_pipeline
from shared.coco.dataset import parse_splits
from shared.config import Config, Options
from shared.errors import GtcocoError
from shared.io.queue import CloudTasksQueue, QueueTarget
from shared.io.storage import (
    AccessDenied,
    GcsStore,
    LocalStore,
    NotFound,
    ObjectStore,
    open_store,
    parse_gs_uri,
)
from shared.raster.draw import canvas, draw

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gtcoco", description="GT Studio exports to COCO.")
    parser.add_argument("--version", action="version", version=f"gtcoco {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser(
        "convert",
        help="convert exports to COCO, one output folder per input (README: Output layout)",
    )
    convert.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help="export files, folders (recursive) or gs://bucket/prefix",
    )
    convert.add_argument("--out", required=True, metavar="DST", help="folder or gs://bucket/prefix")
    convert.add_argument(
        "--categories", metavar="FILE", help="the project's class list (seeds category ids)"
    )
    convert.add_argument(
        "--rect-as-polygon",
        action="store_true",
        default=None,
        help="emit rectangles as 4-corner polygons too",
    )
    convert.add_argument(
        "--raster-segmentation",
        choices=["auto", "rle", "polygon"],
        help="segmentation of raster regions (default auto)",
    )
    convert.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    assemble = sub.add_parser(
        "assemble", help="converted outputs -> one COCO dataset (a file per split and task)"
    )
    assemble.add_argument(
        "sources", nargs="+", metavar="SRC", help="folders or gs://bucket/prefix of gtcoco outputs"
    )
    assemble.add_argument(
        "--out", required=True, metavar="DST", help="folder or gs://bucket/prefix"
    )
    assemble.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="NAME=FRACTION",
        help="a split and its share of the jobs (repeat; default train=0.9 val=0.1)",
    )
    assemble.add_argument(
        "--images",
        choices=["none", "copy"],
        default="none",
        help="copy every image to images/<split>/ (default none)",
    )
    assemble.add_argument("--name", help="the dataset's name (default: DST's last segment)")
    assemble.add_argument(
        "--shard-jobs",
        type=int,
        metavar="N",
        help="assemble in shards of N jobs (map, then reduce), as POST /assemble does on "
        "Cloud Tasks; the dataset is the same byte for byte",
    )
    assemble.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    preview = sub.add_parser(
        "preview", help="draw a dataset's annotations on its images (or grey canvases)"
    )
    preview.add_argument("dataset", metavar="DATASET", help="a folder gtcoco assemble wrote")
    preview.add_argument("--out", required=True, metavar="DIR", help="where the PNGs go")
    preview.add_argument("--split", action="append", default=[], help="only these splits")
    preview.add_argument("--limit", type=int, default=50, help="images per split (default 50)")
    backfill = sub.add_parser(
        "backfill", help="convert every export not yet converted at its live generation"
    )
    backfill.add_argument("source", metavar="gs://INPUT[/PREFIX]", help="the exports")
    backfill.add_argument(
        "--out",
        required=True,
        metavar="gs://OUTPUT[/PREFIX]",
        help="where their outputs are (and go)",
    )
    backfill.add_argument(
        "--local",
        action="store_true",
        help="convert here on a worker pool instead of enqueuing Cloud Tasks",
    )
    backfill.add_argument("--workers", type=int, default=4, help="--local: parallel inputs")
    backfill.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most this many exports this run (a rerun takes the rest)",
    )
    backfill.add_argument("--queue", help="projects/P/locations/L/queues/Q (GTCOCO_TASKS_QUEUE)")
    backfill.add_argument("--target", help="the HTTP function's URL (GTCOCO_TASKS_URL)")
    backfill.add_argument(
        "--service-account", help="the task-invoker account (GTCOCO_TASKS_SERVICE_ACCOUNT)"
    )
    backfill.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    return parser


def _sources(locations: Sequence[str]) -> list[tuple[ObjectStore, str, Path | None]]:
    """(store, object name, local root) for every candidate object under the locations."""
    found: list[tuple[ObjectStore, str, Path | None]] = []
    for location in locations:
        if location.startswith("gs://"):
            bucket, prefix = parse_gs_uri(location)
            store = open_store(f"gs://{bucket}")
            found += [(store, name, None) for name in store.list(prefix)]
            continue
        path = Path(location)
        if path.is_file():
            root = path.parent.resolve()
            found.append((LocalStore(root), path.name, root))
        elif path.is_dir():
            local = LocalStore(path)
            found += [(local, name, local.root) for name in local.list()]
        else:
            raise FileNotFoundError(location)
    return found


def _pair_duplicates(found: list[tuple[ObjectStore, str, Path | None]]) -> set[int]:
    """Positions of masks whose legend is in the same run: the pair is converted once."""
    names = {(id(store), name) for store, name, _ in found}
    return {
        i
        for i, (store, name, _) in enumerate(found)
        if name.lower().endswith(".png") and (id(store), raster_pair(name)[1]) in names
    }


class Progress:
    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled and total > 1

    def show(self, done: int, name: str) -> None:
        if self.enabled:
            width = 30
            filled = width * done // self.total
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {name[-40:]:<40}"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 90 + "\r")


def convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = Config.from_env()
    options = Options(
        rect_as_polygon=config.options.rect_as_polygon
        if args.rect_as_polygon is None
        else args.rect_as_polygon,
        raster_segmentation=args.raster_segmentation or config.options.raster_segmentation,
    )
    config = dataclasses.replace(
        config, options=options, categories_seed=args.categories or config.categories_seed
    )
    if not args.out.startswith("gs://") and Path(args.out).exists() and not Path(args.out).is_dir():
        err.write(f"gtcoco: --out {args.out} is a file; give a folder or gs://bucket/prefix\n")
        return EXIT_USAGE
    try:
        found = _sources(args.sources)
    except FileNotFoundError as exc:
        err.write(f"gtcoco: no such file or folder: {exc}\n")
        return EXIT_USAGE
    except (AccessDenied, NotFound) as exc:
        err.write(f"gtcoco: cannot list a source: {exc}\n")
        return EXIT_USAGE
    destination = open_store(args.out, config.storage_retry_deadline_s)
    buckets = tuple(sorted({s.bucket for s, _, root in found if root is None}))
    skip = _pair_duplicates(found)
    progress = Progress(len(found), err, err.isatty() and not args.quiet)
    pipelines = {}
    tally: Counter[str] = Counter()
    written = 0
    started = time.monotonic()
    for done, (store, name, root) in enumerate(found, start=1):
        progress.show(done, name)
        if done - 1 in skip:
            continue
        try:
            if id(store) not in pipelines:
                pipelines[id(store)] = build_pipeline(
                    config, store, destination, local_root=root, buckets=buckets
                )
            info = store.stat(name)
            generation = info.generation if root is None and info else None
            ref = SourceRef(
                store.bucket,
                name,
                generation,
                info.size if info else None,
                info.metadata if info else {},
            )
            outcome = pipelines[id(store)].process(ref)
        except (GtcocoError, AccessDenied, ValueError, OSError) as exc:
            # One input's failure (a retryable fault, a refused name, an unreadable file)
            # never stops the rest.
            outcome = Outcome("failed", key_for(name), f"{type(exc).__name__}: {exc}")
        tally[outcome.status] += 1
        written += len(outcome.outputs)
        if not args.quiet:
            _print_outcome(outcome, name, out, progress)
    progress.close()
    seconds = time.monotonic() - started
    summary = ", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "nothing to convert"
    out.write(f"gtcoco: {summary}; {written} objects written to {args.out} in {seconds:.1f}s\n")
    return EXIT_FAILED if tally["failed"] or tally["partial"] else EXIT_OK


def assemble(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = Config.from_env()
    splits = parse_splits(args.split)
    sources = []
    for location in args.sources:
        if not location.startswith("gs://") and not Path(location).is_dir():
            err.write(f"gtcoco: no such folder: {location}\n")
            return EXIT_USAGE
        sources.append(Source(location, open_store(location, config.storage_retry_deadline_s)))
    if not args.out.startswith("gs://") and Path(args.out).exists() and not Path(args.out).is_dir():
        err.write(f"gtcoco: --out {args.out} is a file; give a folder or gs://bucket/prefix\n")
        return EXIT_USAGE
    name = args.name or posixpath.basename(args.out.rstrip("/")) or "dataset"
    bar = Bar(err, err.isatty() and not args.quiet)
    assembler = build_assembler(
        config, open_store(args.out, config.storage_retry_deadline_s), progress=bar.show
    )
    started = time.monotonic()
    if args.shard_jobs is not None:
        if args.shard_jobs < 1:
            err.write("gtcoco: --shard-jobs must be at least 1\n")
            return EXIT_USAGE
        result = run_in_shards(assembler, sources, splits, args.images, name, args.shard_jobs)
    else:
        result = assembler.run(sources, splits, args.images, name)
    bar.close()
    doc = result.dataset
    if not args.quiet:
        for split, counts in doc["splits"].items():
            out.write(
                f"{split:<8} {counts['images']} images, {counts['instances']} instances, "
                f"{counts['keypoints']} keypoint annotations, "
                f"{counts['panoptic_images']} panoptic images\n"
            )
        for failure in result.copy_failures:
            out.write(f"image not copied: {failure['url']}: {failure['error']}\n")
    jobs = sum(s["jobs"] for s in doc["sources"])
    out.write(
        f"gtcoco: {jobs} jobs, {doc['categories']} categories, {len(doc['splits'])} splits "
        f"written to {args.out} in {time.monotonic() - started:.1f}s"
        + (f"; {len(result.copy_failures)} images not copied" if result.copy_failures else "")
        + "\n"
    )
    return EXIT_FAILED if result.copy_failures else EXIT_OK


def preview(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    root = Path(args.dataset)
    manifest = root / "dataset.json"
    if not manifest.is_file():
        err.write(f"gtcoco: {root} has no dataset.json: give a folder gtcoco assemble wrote\n")
        return EXIT_USAGE
    splits = args.split or list(json.loads(manifest.read_text())["splits"])
    drawn = 0
    for split in splits:
        docs = [
            json.loads((root / "annotations" / f"{kind}_{split}.json").read_text())
            for kind in ("instances", "keypoints")
        ]
        categories = {int(c["id"]): c for c in docs[1]["categories"]}
        by_image: dict[int, list[Any]] = {}
        for doc in docs:
            for ann in doc["annotations"]:
                by_image.setdefault(int(ann["image_id"]), []).append(ann)
        extras_file = root / "annotations" / f"extras_{split}.json"
        extras: dict[int, list[Any]] = {}
        if extras_file.is_file():
            for entry in json.loads(extras_file.read_text())["extras"]:
                extras.setdefault(int(entry["image_id"]), []).append(entry)
        for image in docs[0]["images"][: max(0, args.limit)]:
            source = root / "images" / split / image["file_name"]
            found = cv2.imread(str(source), cv2.IMREAD_COLOR) if source.is_file() else None
            pixels = (
                np.asarray(found, np.uint8)
                if found is not None and found.shape[:2] == (image["height"], image["width"])
                else canvas(image["width"], image["height"])
            )
            target = Path(args.out) / split / (image["file_name"] + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            found_here = by_image.get(int(image["id"]), [])
            cv2.imwrite(
                str(target),
                draw(pixels, found_here, categories, extras.get(int(image["id"]), [])),
            )
            drawn += 1
    out.write(f"gtcoco: {drawn} previews written to {args.out}\n")
    return EXIT_OK


def backfill(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = Config.from_env()
    if not args.source.startswith("gs://") or not args.out.startswith("gs://"):
        err.write("gtcoco: backfill reads gs://INPUT[/PREFIX] and --out gs://OUTPUT[/PREFIX]\n")
        return EXIT_USAGE
    bucket, prefix = parse_gs_uri(args.source)
    source = GcsStore(bucket, retry_deadline_s=config.storage_retry_deadline_s)
    destination = open_store(args.out, config.storage_retry_deadline_s)
    buckets = (bucket,)

    def pipeline() -> Pipeline:
        return build_pipeline(config, source, destination, buckets=buckets)

    limit = args.limit if args.limit is not None else config.backfill_max_tasks
    result = BackfillResult()
    bar = Bar(err, err.isatty() and not args.quiet)
    refs = pending(
        source,
        pipeline(),
        prefix,
        result,
        progress=lambda done, total: bar.show("listing", done, total),
    )
    started = time.monotonic()
    if args.local:
        run_locally(refs, pipeline, args.workers, limit, result)
    else:
        target = QueueTarget(
            args.queue or config.tasks_queue,
            args.target or config.tasks_url,
            args.service_account or config.tasks_service_account,
        )
        if not (target.queue and target.url and target.service_account):
            err.write(
                "gtcoco: give --queue, --target and --service-account (or their "
                "GTCOCO_TASKS_* variables), or --local\n"
            )
            return EXIT_USAGE
        enqueue(refs, CloudTasksQueue(target), limit, result)
    bar.close()
    done = (
        ", ".join(f"{n} {s}" for s, n in sorted(result.converted.items()))
        if args.local
        else f"{result.enqueued} tasks enqueued, {result.deduplicated} already queued"
    )
    out.write(
        f"gtcoco: backfill of {args.source}: {result.listed} objects, {result.current} "
        f"already converted, {result.not_exports} not exports; {done}"
        + (f"; {result.left} left for the next run" if result.left else "")
        + f" ({time.monotonic() - started:.1f}s)\n"
    )
    failed = result.converted.get("failed", 0) + result.converted.get("partial", 0)
    return EXIT_FAILED if failed else EXIT_OK


class Bar:
    """A progress bar on a terminal, one line per stage."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream, self.enabled, self.stage = stream, enabled, ""

    def show(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or not total:
            return
        if stage != self.stage and self.stage:
            self.stream.write("\n")
        self.stage = stage
        filled = 30 * done // total
        self.stream.write(f"\r{stage:<15} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.stage:
            self.stream.write("\n")


def _print_outcome(outcome: Outcome, name: str, out: TextIO, progress: Progress) -> None:
    if progress.enabled:
        out.write("\r")
    line = f"{outcome.status:<9} {name}"
    if outcome.status in {"converted", "partial"} and outcome.report:
        counts = outcome.report.get("counts") or {}
        jobs = outcome.report.get("jobs")
        line += (
            f" -> {len(jobs)} jobs"
            if jobs
            else f" -> {posixpath.join(outcome.prefix, 'coco.json')} "
            f"({counts.get('annotations', 0)} annotations)"
        )
    for error in outcome.errors:
        e = error["error"]
        line += f"\n          {error['key']}: {e['code']}: {e['message']}"
        if e["pointer"]:
            line += f" (at {e['pointer']})"
    if (outcome.status in {"skipped", "waiting", "duplicate"} and outcome.reason) or (
        outcome.status == "failed" and not outcome.errors
    ):
        line += f" ({outcome.reason})"
    out.write(line + "\n")


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        if args.command == "assemble":
            return assemble(args, out, err)
        if args.command == "backfill":
            return backfill(args, out, err)
        if args.command == "preview":
            return preview(args, out, err)
        return convert(args, out, err)
    except (ValueError, GtcocoError, AccessDenied, OSError) as exc:
        err.write(f"gtcoco: {getattr(exc, 'message', exc)}\n")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
