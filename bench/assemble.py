"""`gtcoco assemble` at 10,000 and 100,000 per-image outputs: images/s and peak memory.

    python -m bench.assemble [--quick]

Each size runs in a fresh process (peak RSS is per process). The outputs are written
straight to a temporary folder in gtcoco's layout (a report and a coco.json per job, two
annotations each, a registry), so the run measures the assembler alone.  Target: peak at
100,000 <= 1.5x the peak at 10,000 (memory bounded by the largest image, not the dataset).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.app.assemble import Source
from shared.app.runtime import build_assembler
from shared.config import Config
from shared.io.storage import LocalStore

LABELS = ["car", "bus", "person", "bike"]


def write_outputs(root: Path, jobs: int) -> None:
    (root / "_registry").mkdir(parents=True)
    (root / "_registry" / "categories.json").write_text(json.dumps(
        {"categories": [{"id": i + 1, "name": n} for i, n in enumerate(LABELS)]}))
    for i in range(jobs):
        folder = root / f"exports/batch-{i // 1000:03d}.json@/jobs/job-{i:07d}"
        folder.mkdir(parents=True)
        anns: list[dict[str, Any]] = []
        for k in range(2):
            x, y = 10.0 + 50 * k, 20.0
            anns.append({"id": k + 1, "image_id": 1, "category_id": (i + k) % 4 + 1,
                         "bbox": [x, y, 40.0, 30.0], "area": 1200.0, "iscrowd": 0,
                         "segmentation": [[x, y, x + 40, y, x + 40, y + 30, x, y + 30]],
                         "box_only": True, "attributes": {}, "gt_id": f"r{k}"})
        coco = {"info": {}, "licenses": [], "annotations": anns,
                "categories": [{"id": c, "name": LABELS[c - 1], "supercategory": ""}
                               for c in sorted({a["category_id"] for a in anns})],
                "images": [{"id": 1, "file_name": f"{i}.jpg", "width": 640, "height": 480,
                            "image_url": f"http://cdn.example.com/cam{i % 4}/{i:07d}.jpg",
                            "reference_id": f"job-{i:07d}"}]}
        (folder / "coco.json").write_text(json.dumps(coco))
        prefix = folder.relative_to(root).as_posix()
        (folder / "report.json").write_text(json.dumps({
            "key": f"exports/batch-{i // 1000:03d}/job-{i:07d}", "status": "converted",
            "counts": {"annotations": 2}, "outputs": [f"{prefix}/coco.json"],
            "sources": [{"bucket": "in", "name": f"exports/batch-{i // 1000:03d}.json",
                         "generation": 1}]}))


def one(jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gtcoco-bench-asm-") as tmp:
        root = Path(tmp)
        write_outputs(root / "out", jobs)
        # The writing above allocates nothing that lasts; the peak below is the assembler's.
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        result = build_assembler(Config(), LocalStore(root / "ds")).run(
            [Source(str(root / "out"), LocalStore(root / "out"))],
            (("train", 0.9), ("val", 0.1)), "none", "bench")
        seconds = time.perf_counter() - started
        images = sum(s["images"] for s in result.dataset["splits"].values())
        assert images == jobs, images
        return {"jobs": jobs, "seconds": round(seconds, 2), "images_per_s": round(jobs / seconds),
                "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "before_mib": round(base, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 jobs")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    found = []
    for jobs in sizes:
        out = subprocess.run([sys.executable, "-m", "bench.assemble", "--one", str(jobs)],
                             capture_output=True, text=True, check=True)
        found.append(json.loads(out.stdout.splitlines()[-1]))
        r = found[-1]
        print(f"assemble {r['jobs']:>7} per-image outputs  {r['seconds']:7.2f} s  "
              f"{r['images_per_s']:6d} images/s  peak {r['peak_mib']:6.1f} MiB", flush=True)
    small, large = found
    print(f"  -> peak at {large['jobs']} = {large['peak_mib'] / small['peak_mib']:.2f}x the peak "
          f"at {small['jobs']} (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
