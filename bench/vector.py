"""Vector conversion and image-size reading, against the export guide's algorithms.

Prints jobs/second for a 1,000-polygon job (ours vs a re-implementation of the guide's
natural-sort polygons and first-corner boxes, without its download) and the bytes read to
learn a 12 MP image's size (ours: header only; the guide: the whole file).
"""

from __future__ import annotations

import io
import ipaddress
import math
import re
import statistics
import time
from typing import Any

import numpy as np
from PIL import Image

from shared.coco.builder import ImageSize, convert_vector_job
from shared.config import Limits, Options
from shared.gtstudio.jobs import parse_job
from shared.io.fetch import Fetcher, FetchPolicy
from shared.raster.imagesize import size_from_chunks
from tests.httpserver import CountingServer


def polygon_job(n: int = 1000, vertices: int = 24) -> dict[str, Any]:
    polys = []
    for i in range(n):
        cx, cy = (i % 40) / 40 + 0.01, (i // 40) / 25 + 0.01
        pts = {f"p{k + 1}": {"x": cx + 0.01 * math.cos(k / vertices * 6.283),
                             "y": cy + 0.01 * math.sin(k / vertices * 6.283)}
               for k in range(vertices)}
        edges = {f"e{k + 1}": [f"p{k + 1}", f"p{(k + 1) % vertices + 1}"] for k in range(vertices)}
        polys.append({"_id": f"id{i}", "label": f"c{i % 10}", "points": pts, "edges": edges,
                      "attributes": {"a": {"value": "x"}}})
    return {"image_url": "u", "width": 1920, "height": 1080,
            "maker_response": {"polygons": {"data": polys}}}


def guide(build: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    """The guide's polygon loop, bugs included (label ids, natural order, no area)."""
    def natural(keys: list[str]) -> list[str]:
        return sorted(keys, key=lambda k: [int(t) if t.isdigit() else t.lower()
                                           for t in re.split("([0-9]+)", k)])

    data: dict[str, Any] = {"images": [], "category": [], "annotations": []}
    for ann in build["maker_response"]["polygons"]["data"]:
        order = natural(list(ann["points"]))
        coco: list[float] = []
        for p in order:
            coco += [ann["points"][p]["x"] * w, ann["points"][p]["y"] * h]
        coco += [ann["points"][order[0]]["x"] * w, ann["points"][order[0]]["y"] * h]
        xs, ys = coco[::2], coco[1::2]
        data["annotations"].append({"id": ann["_id"], "category_id": ann["label"],
                                    "segmentation": [coco], "attributes": ann["attributes"],
                                    "bbox": [min(xs), min(ys), round(max(xs) - min(xs), 4),
                                             round(max(ys) - min(ys), 4)]})
    return data


def ours(build: dict[str, Any]) -> dict[str, Any]:
    job = parse_job(build, "", Limits())
    ids = {label: i for i, label in enumerate(job.labels, start=1)}
    return convert_vector_job(job, ImageSize(1920, 1080, "explicit"), ids, Options(), "k"
                              ).finish().coco


def paired(calls: list[Any], rounds: int = 41) -> list[float]:
    """Median seconds of each call, the calls timed in turn each round (machine drift hits
    all of them alike)."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            samples[i].append(time.perf_counter() - start)
    return [statistics.median(found) for found in samples]


def header_bytes() -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    policy = FetchPolicy(schemes=frozenset({"http"}),
                         trusted_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    print("\nbytes read to learn a 12 MP image's size")
    print(f"{'format':<6} {'file bytes':>12} {'ours':>8} {'ratio':>10}")
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt)
        body = buffer.getvalue()
        with CountingServer(routes={"/i": (200, {}, body)}) as server:
            w, h, read = size_from_chunks(Fetcher(policy).chunks(server.url("/i"), 4096), 4 << 20)
        assert (w, h) == (4000, 3000)
        print(f"{fmt:<6} {len(body):>12,} {read:>8,} {len(body) / read:>9,.0f}x")


def main() -> None:
    build = polygon_job()
    job = parse_job(build, "", Limits())
    ids = {label: i for i, label in enumerate(job.labels, start=1)}
    size = ImageSize(1920, 1080, "explicit")
    guide_s, ours_s, parse_s, convert_s = paired([
        lambda: guide(build, 1920, 1080),
        lambda: ours(build),
        lambda: parse_job(build, "", Limits()),
        lambda: convert_vector_job(job, size, ids, Options(), "k").finish(),
    ])
    print("1,000-polygon job (24 vertices each), conversion only, medians of 41 interleaved runs")
    print(f"guide re-implementation: {1 / guide_s:8.1f} jobs/s  ({guide_s * 1000:.1f} ms)")
    print(f"gtcoco:                  {1 / ours_s:8.1f} jobs/s  ({ours_s * 1000:.1f} ms: parse "
          f"{parse_s * 1000:.1f}, convert {convert_s * 1000:.1f})")
    print(f"ratio: {guide_s / ours_s:.2f}x the guide (target >= 1.5x); ours also validates, "
          "walks edges, clips and computes pycocotools areas")
    header_bytes()


if __name__ == "__main__":
    main()
