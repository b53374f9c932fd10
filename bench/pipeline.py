"""Batches through the whole pipeline: the stages' concurrency and memory (issue: three
stages, parallel IO, streamed batches).

Each scenario runs in a fresh process (peak RSS is per process) and the serial baseline,
`GTCOCO_IO_WORKERS=1`, runs in the same invocation:

- headers: a 1,000-job batch whose image sizes come from a local server answering each
  request after 50 ms; outputs in memory.  Target: >= 15x faster than serial.
- explicit: 1,000 and 10,000 jobs with explicit sizes; jobs/s and peak memory.  Target:
  peak at 10,000 <= 1.5x the peak at 1,000.
- gcs: 1,000 jobs read from and written to fake-gcs-server (2 objects a job and the
  report); serial vs concurrent writes.

    python -m bench.pipeline [--quick]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from shared.app.pipeline import SourceRef
from shared.app.runtime import build_pipeline, fetch_policy
from shared.config import Config
from shared.io.storage import GcsStore, LocalStore, MemoryStore, ObjectStore
from tests.masks import encode_png

LATENCY_S = 0.05
PNG = encode_png(np.zeros((480, 640, 4), np.uint8))
RECT = {"_id": "r", "label": "car", "coordinates": [{"x": 0.1, "y": 0.1}, {"x": 0.2, "y": 0.3}]}
POLY = {"_id": "p", "label": "person", "points": {
    f"p{i}": {"x": 0.5 + 0.3 * np.cos(i / 4), "y": 0.5 + 0.3 * np.sin(i / 4)} for i in range(25)}}


class SinkStore(MemoryStore):
    """An output bucket that keeps what the pipeline reads back (reports, locks, the
    registry) and only the size of the rest, so peak memory is the pipeline's own, not a
    10,000-object bucket held in this process."""

    KEPT = ("batch.json@/report.json", "batch.json@/error.json", "batch.json@/lock.json",
            "_registry/categories.json")

    def write(self, name: str, data: bytes, content_type: str,
              if_generation_match: int | None = None, metadata: Any = None) -> int:
        kept = data if name in self.KEPT else b""
        return super().write(name, kept, content_type, if_generation_match)


def batch(jobs: int, image_url: str | None) -> Iterator[bytes]:
    """The batch's bytes a job at a time: making it holds no more than one job, so the
    process's peak memory is the pipeline's."""
    yield b"["
    for i in range(jobs):
        job: dict[str, Any] = {"reference_id": f"job-{i:06d}",
                               "maker_response": {"rectangles": {"data": [RECT]},
                                                  "polygons": {"data": [POLY]}}}
        if image_url:
            job["image_url"] = f"{image_url}/img/{i}.png"
        else:
            job["width"], job["height"] = 1920, 1080
        yield (b"," if i else b"") + json.dumps(job).encode()
    yield b"]"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default 5 drops a burst of connections (1 s SYN retry)


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open, as CDNs do

    def do_GET(self) -> None:
        time.sleep(LATENCY_S)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(ready: multiprocessing.Queue[int]) -> None:
    server = _Server(("127.0.0.1", 0), _Slow)
    ready.put(server.server_address[1])
    server.serve_forever()


def one(kind: str, jobs: int, workers: int) -> dict[str, Any]:
    """One scenario in this process: seconds, jobs/s, peak RSS."""
    # Every other knob from the environment (GTCOCO_READ_CHUNK_BYTES, ...), as deployed.
    config = Config.from_env({**os.environ, "INPUT_BUCKET": "bench-in",
                              "OUTPUT_BUCKET": "bench-out", "GTCOCO_IO_WORKERS": str(workers)})
    server = None
    kwargs: dict[str, Any] = {}
    if kind == "headers":
        # The image server runs in a process of its own, as a CDN would: its CPU and its
        # threads are not the pipeline's.
        ready: multiprocessing.Queue[int] = multiprocessing.Queue()
        server = multiprocessing.Process(target=_serve, args=(ready,), daemon=True)
        server.start()
        data = batch(jobs, f"http://cdn.example.com:{ready.get(timeout=30)}")
        kwargs = {"policy": fetch_policy(config, trusted_networks=(
            ipaddress.ip_network("127.0.0.1/32"),)), "resolver": lambda h, p: ["127.0.0.1"]}
    else:
        data = batch(jobs, None)
    source: ObjectStore
    out: ObjectStore
    if kind == "gcs":
        source, out = GcsStore("bench-in"), GcsStore("bench-out")
        source.write("batch.json", b"".join(data), "application/json")
    else:
        # The input on disk, so that its bytes are the pipeline's to hold or not.
        root = Path(tempfile.mkdtemp(prefix="gtcoco-bench-"))
        with (root / "batch.json").open("wb") as f:
            f.writelines(data)
        source, out = LocalStore(root), SinkStore("bench-out")
    pipeline = build_pipeline(config, source, out, **kwargs)
    info = source.stat("batch.json")
    assert info is not None
    started, cpu = time.perf_counter(), time.process_time()
    outcome = pipeline.process(SourceRef("bench-in", "batch.json", info.generation, info.size))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert outcome.status == "converted", outcome.reason
    if server is not None:
        server.terminate()
    return {"kind": kind, "jobs": jobs, "workers": workers, "seconds": round(seconds, 3),
            "jobs_per_s": round(jobs / seconds, 1), "cpu_s": round(cpu, 2),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run(kind: str, jobs: int, workers: int, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", "--one", kind, str(jobs), str(workers)],
        capture_output=True, text=True, check=True, env=env)
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"  {kind:8} {jobs:>6} jobs  workers {workers:>2}  {found['seconds']:8.2f} s  "
          f"{found['jobs_per_s']:8.1f} jobs/s  cpu {found['cpu_s']:6.2f} s  "
          f"peak {found['peak_mib']:7.1f} MiB", flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=3)
    parser.add_argument("--quick", action="store_true", help="10x fewer jobs")
    parser.add_argument("--skip", action="append", default=[], help="headers, explicit or gcs")
    args = parser.parse_args(argv)
    if args.one:
        kind, jobs, workers = args.one
        print(json.dumps(one(kind, int(jobs), int(workers))))
        return 0
    scale = 10 if args.quick else 1
    workers = Config().io_workers
    env = {**os.environ, "NO_GCE_CHECK": "true"}
    if "headers" not in args.skip:
        print(f"headers ({LATENCY_S * 1000:.0f} ms a request), serial vs {workers} IO workers:")
        serial = run("headers", 1000 // scale, 1, env)
        parallel = run("headers", 1000 // scale, workers, env)
        print(f"  -> {serial['seconds'] / parallel['seconds']:.1f}x faster than serial "
              "(target >= 15x)")
    if "explicit" not in args.skip:
        print("explicit sizes, in memory (outputs' bytes not kept):")
        run("explicit", 1000 // scale, 1, env)
        small = run("explicit", 1000 // scale, workers, env)
        large = run("explicit", 10000 // scale, workers, env)
        print(f"  -> peak at {large['jobs']} jobs = {large['peak_mib'] / small['peak_mib']:.2f}x "
              f"the peak at {small['jobs']} (target <= 1.5x)")
    if "gcs" in args.skip:
        return 0
    from tests.functions.harness import storage_emulator

    with storage_emulator("bench-in", "bench-out") as (url, _):
        gcs_env = {**env, "STORAGE_EMULATOR_HOST": url, "GOOGLE_CLOUD_PROJECT": "test-project"}
        print("fake-gcs-server, reads and writes:")
        serial = run("gcs", 1000 // scale, 1, gcs_env)
        parallel = run("gcs", 1000 // scale, workers, gcs_env)
        print(f"  -> {serial['seconds'] / parallel['seconds']:.1f}x faster than serial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
