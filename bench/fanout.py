"""Fan-out on Cloud Tasks: measured shard times, and the projected wall time of 10,000- and
100,000-job batches and of a 1,000,000-image assembly.

    python -m bench.fanout [--quick] [--latency-ms 25] [--concurrency 10]

Everything runs in this process against in-memory buckets that wait `--latency-ms` on
every storage request (a small-object read or write inside one region takes 20-50 ms), and
a queue that waits 20 ms a task created.  Each shard, map and reduce is one real run of the
code a task runs; the projections put them side by side as Cloud Tasks would, with
`--concurrency` tasks at once (the queue's max_concurrent_dispatches, infra default 10, and
at least as many HTTP function instances), and are printed with the measured parts they
add up.  Jobs carry their image size (no header fetch), so a shard's time is reading the
batch, converting and writing; a slow image host adds its latency per job on top.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.app import assemble_shards as shards
from shared.app.assemble import Source
from shared.app.pipeline import Pipeline, SourceRef
from shared.app.runtime import build_assembler, build_converter
from shared.config import Config, Limits
from shared.io.storage import MemoryStore

TIME_LIMIT_S = 540  # an event-driven function's limit
TASK_S = 0.020  # creating one task


class SlowStore:
    """A bucket in memory whose every request takes `latency` seconds (threads overlap)."""

    def __init__(self, inner: MemoryStore, latency: float) -> None:
        self.inner, self.latency = inner, latency
        self.bucket = inner.bucket
        self.can_copy_from_gcs = False

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if not callable(found):
            return found

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self.latency)
            return found(*args, **kwargs)

        return slow


class SlowQueue:
    def __init__(self) -> None:
        self.tasks: dict[str, tuple[str, dict[str, Any]]] = {}

    def enqueue(self, name: str, route: str, body: Mapping[str, Any]) -> bool:
        time.sleep(TASK_S)
        if name in self.tasks:
            return False
        self.tasks[name] = (route, dict(body))
        return True


def batch(jobs: int) -> bytes:
    return json.dumps([
        {"image_url": f"https://cdn.example.com/{i}.jpg", "reference_id": f"ref-{i}",
         "width": 640, "height": 480,
         "maker_response": {"rectangles": {"data": [
             {"_id": "r", "label": f"c{i % 7}",
              "coordinates": [{"x": .1, "y": .1}, {"x": .5, "y": .6}]}]}}}
        for i in range(jobs)]).encode()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def batch_figures(jobs: int, shard_jobs: int, latency: float, single: bool,
                  sample: int) -> dict[str, Any]:
    """The fan-out of one batch of `jobs`: the event, `sample` shards (first and last
    included), and (with `single`) the same batch in one run."""
    data = batch(jobs)
    # A batch this big needs its limits raised, as a deployment would (GTCOCO_MAX_*).
    limits = dataclasses.replace(
        Limits(),
        max_batch_jobs=max(Limits().max_batch_jobs, jobs),
        max_object_bytes=max(Limits().max_object_bytes, 2 * len(data)),
    )
    config = Config(input_bucket="in", shard_jobs=shard_jobs, limits=limits)
    source = SlowStore(MemoryStore("in"), latency)
    generation = source.inner.write("big.json", data, "application/json")
    ref = SourceRef("in", "big.json", generation, len(data))
    figures: dict[str, Any] = {"jobs": jobs, "mib": len(data) / 2**20}

    def pipeline(out: SlowStore, queue: SlowQueue | None) -> Pipeline:
        converter = build_converter(config, out, open_bucket=False)
        return Pipeline(source, out, converter, queue=queue)

    if single:
        out = SlowStore(MemoryStore("single"), latency)
        figures["single_s"], outcome = timed(lambda: pipeline(out, None).process(ref))
        assert outcome.status == "converted", outcome
    out, queue = SlowStore(MemoryStore("out"), latency), SlowQueue()
    figures["fanout_s"], outcome = timed(lambda: pipeline(out, queue).process(ref))
    assert outcome.status == "fanned_out", outcome
    count = len(queue.tasks)
    # The first shards and the last one (which merges the report).
    times = []
    for index in sorted({*range(min(sample - 1, count)), count - 1}):
        started = time.perf_counter()
        outcome = pipeline(out, queue).process_shard(ref, index)
        seconds = time.perf_counter() - started
        assert outcome.status == "converted", outcome
        times.append(seconds)
    figures.update(shards=count, shard_s=times)
    return figures


def converted_outputs(store: MemoryStore, jobs: int) -> None:
    """gtcoco's layout for `jobs` single-image jobs, written straight into `store`."""
    store.write("_registry/categories.json", json.dumps(
        {"categories": [{"id": i + 1, "name": f"c{i}"} for i in range(7)]}).encode(),
        "application/json")
    for i in range(jobs):
        folder = f"exports/b{i // 1000:04d}.json@/jobs/ref-{i:07d}"
        coco = {"info": {}, "licenses": [], "categories": [{"id": 1 + i % 7, "name": f"c{i % 7}"}],
                "images": [{"id": 1, "file_name": f"{i}.jpg", "width": 640, "height": 480,
                            "image_url": f"https://cdn.example.com/{i}.jpg"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1 + i % 7,
                                 "bbox": [64.0, 48.0, 256.0, 240.0], "area": 61440.0,
                                 "iscrowd": 0, "segmentation": [[64, 48, 320, 48, 320, 288]],
                                 "attributes": {}}]}
        store.write(f"{folder}/coco.json", json.dumps(coco).encode(), "application/json")
        store.write(f"{folder}/report.json", json.dumps({
            "key": f"exports/b{i // 1000:04d}/ref-{i:07d}", "status": "converted",
            "outputs": [f"{folder}/coco.json"],
            "sources": [{"bucket": "in", "name": f"exports/b{i // 1000:04d}.json",
                         "generation": "1"}]}).encode(), "application/json")


def assembly_figures(jobs: int, shard_jobs: int, latency: float) -> dict[str, Any]:
    raw = MemoryStore("out")
    converted_outputs(raw, jobs)
    sources = [Source("mem://out", SlowStore(raw, latency))]
    target = SlowStore(MemoryStore("ds"), latency)
    assembler = build_assembler(Config(), target)
    splits = (("train", 0.9), ("val", 0.1))
    listing = assembler.listing(sources)
    request = shards.request_of(sources, splits, "none", "ds")
    plan_s, made = timed(lambda: shards.plan(assembler, listing, request, shard_jobs))
    maps = []
    for index in range(made.shards):
        started = time.perf_counter()
        shards.map_shard(assembler, sources, made, index)
        maps.append(time.perf_counter() - started)
    reduce_s, result = timed(lambda: shards.reduce_shards(assembler, sources, made))
    assert sum(s["images"] for s in result.dataset["splits"].values()) == jobs
    return {"jobs": jobs, "shard_jobs": shard_jobs, "plan_s": plan_s, "map_s": maps,
            "reduce_s": reduce_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    latency, conc = args.latency_ms / 1000, args.concurrency
    small, large, shard_jobs = (2_000, 10_000, 500) if args.quick else (10_000, 100_000, 2_000)
    print(f"storage latency {args.latency_ms:g} ms a request, {TASK_S * 1000:g} ms a task "
          f"created, {conc} tasks at once; jobs carry their image size")
    per_job = 0.0  # one invocation's seconds a job, measured on the smaller batch
    for jobs, single in ((small, True), (large, False)):
        f = batch_figures(jobs, shard_jobs, latency, single, sample=3 if single else 2)
        shard = max(f["shard_s"])
        waves = math.ceil(f["shards"] / conc)
        wall = f["fanout_s"] + waves * shard
        if single:
            per_job = f["single_s"] / jobs
        one_run = per_job * jobs
        print(f"\nbatch of {jobs:,} jobs ({f['mib']:.1f} MiB) in {f['shards']} shards of "
              f"{shard_jobs:,}")
        print(f"  event (read once, plan, enqueue): {f['fanout_s']:.1f} s")
        print("  shards measured: " + ", ".join(f"{s:.1f} s" for s in f["shard_s"])
              + " (the last one also merges the report)")
        print(f"  projected wall time: {f['fanout_s']:.1f} + {waves} waves x {shard:.1f} s = "
              f"{wall:.0f} s")
        kind = "measured" if single else "projected from the measured per-job time"
        print(f"  one invocation ({kind}): {one_run:.0f} s "
              f"({'over' if one_run > TIME_LIMIT_S else 'within'} the {TIME_LIMIT_S} s limit);"
              f" fan-out {one_run / wall:.1f}x faster; the slowest shard takes "
              f"{shard / TIME_LIMIT_S:.0%} of the limit")
    jobs = 20_000 if args.quick else 60_000
    a_shard = 5_000 if args.quick else 20_000
    a = assembly_figures(jobs, a_shard, latency)
    per_map_job = max(a["map_s"]) / a_shard
    per_reduce_job = a["reduce_s"] / jobs
    million = 1_000_000
    maps = million // a_shard
    map_wall = math.ceil(maps / conc) * per_map_job * a_shard
    listing_s = million / 1000 * 0.1  # GCS lists 1,000 names a page, ~100 ms a page
    reduce_s = per_reduce_job * million
    print(f"\nassembly of {jobs:,} jobs in {len(a['map_s'])} map tasks of {a_shard:,}: "
          f"plan {a['plan_s']:.1f} s, maps " + ", ".join(f"{s:.1f}" for s in a["map_s"])
          + f" s, reduce {a['reduce_s']:.1f} s ({jobs / a['reduce_s']:,.0f} images/s)")
    single = per_map_job * million + reduce_s
    print(f"  1,000,000 images projected: listing {listing_s:.0f} s + {maps} maps in "
          f"{math.ceil(maps / conc)} waves {map_wall:.0f} s + reduce {reduce_s:.0f} s = "
          f"{listing_s + map_wall + reduce_s:.0f} s; in one process {listing_s + single:.0f} s "
          f"({single / (map_wall + reduce_s):.1f}x)")


if __name__ == "__main__":
    main()
