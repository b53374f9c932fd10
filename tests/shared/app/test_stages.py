"""Resolve reads concurrently, a window ahead; persist writes concurrently, each report
after its own files; ids stay deterministic; the registry is read once per input."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from shared.app.persist import Writer
from shared.app.pipeline import SourceRef
from shared.app.runtime import build_pipeline, fetch_policy
from shared.config import Config, Limits
from shared.errors import TransientError
from shared.io.storage import MemoryStore, ObjectInfo
from tests.cocoutil import load_coco
from tests.httpserver import Answer, CountingServer
from tests.masks import encode_png

PNG = encode_png(np.zeros((30, 40, 4), np.uint8))
RECT = {"_id": "r", "label": "car", "coordinates": [{"x": 0.1, "y": 0.1}, {"x": 0.2, "y": 0.3}]}


class Gauge:
    """Counts requests in flight at once; each waits `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay, self.now, self.peak, self.total = delay, 0, 0, 0
        self.lock = threading.Lock()

    def __call__(self) -> Answer:
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
        return 200, {"Content-Type": "image/png"}, PNG


def header_batch(base: str, n: int) -> bytes:
    return json.dumps([
        {"reference_id": f"j{i}", "image_url": f"{base}/img.png",
         "maker_response": {"rectangles": {"data": [RECT]}}}
        for i in range(n)
    ]).encode()


def run_batch(data: bytes, workers: int, gauge: Gauge) -> tuple[MemoryStore, Any]:
    source, out = MemoryStore("in"), MemoryStore("out")
    source.write("batch.json", data, "application/json")
    config = Config(input_bucket="in", output_bucket="out", io_workers=workers)
    policy = fetch_policy(config, trusted_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    pipeline = build_pipeline(config, source, out, policy=policy, resolver=lambda h, p: ["127.0.0.1"])
    info = source.stat("batch.json")
    assert info is not None
    return out, pipeline.process(SourceRef("in", "batch.json", info.generation, info.size))


@pytest.mark.parametrize(("workers", "least", "most"), [(1, 1, 1), (8, 4, 8)])
def test_header_reads_wait_together_up_to_the_pool(workers: int, least: int, most: int) -> None:
    gauge = Gauge(0.15)
    with CountingServer(routes={"/img.png": gauge}) as cdn:
        out, outcome = run_batch(header_batch(f"http://cdn.example.com:{cdn.port}", 24), workers, gauge)
    assert outcome.status == "converted", outcome
    assert gauge.total == 24
    assert least <= gauge.peak <= most
    report = json.loads(out.read("batch.json@/report.json"))
    assert [j["key"] for j in report["jobs"]] == [f"batch/j{i}" for i in range(24)]
    for i in range(24):
        coco = load_coco(json.loads(out.read(f"batch.json@/jobs/j{i}/coco.json")))
        assert coco.imgs[1]["width"] == 40 and coco.imgs[1]["height"] == 30


def test_outputs_do_not_depend_on_the_pool_size() -> None:
    labels = ["car", "bus", "person", "tree"]
    data = json.dumps([
        {"reference_id": f"j{i}", "width": 50, "height": 40, "maker_response": {"rectangles": {
            "data": [{**RECT, "label": labels[(i * 3 + k) % 4]} for k in range(i % 3 + 1)]}}}
        for i in range(30)
    ]).encode()
    stores = [run_batch(data, workers, Gauge(0))[0] for workers in (1, 16)]
    serial, parallel = ({n: s.read(n) for n in s.list()} for s in stores)
    assert serial == parallel  # ids, files and reports alike


@dataclass
class CountingStore:
    inner: MemoryStore
    reads: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read_if_exists(self, name: str) -> tuple[bytes, int] | None:
        self.reads[name] = self.reads.get(name, 0) + 1
        return self.inner.read_if_exists(name)


def test_the_registry_is_read_once_per_input_not_once_per_job() -> None:
    source, out = MemoryStore("in"), CountingStore(MemoryStore("out"))
    data = json.dumps([{"reference_id": f"j{i}", "width": 9, "height": 9,
                        "maker_response": {"rectangles": {"data": [RECT]}}} for i in range(50)])
    source.write("a.json", data.encode(), "application/json")
    source.write("b.json", data.encode(), "application/json")
    pipeline = build_pipeline(Config(input_bucket="in", output_bucket="out"), source, out)
    for name in ("a.json", "b.json"):
        info = source.stat(name)
        assert info is not None
        assert pipeline.process(SourceRef("in", name, info.generation)).status == "converted"
    # Once per input: the first writes the new label and knows the ids it wrote.
    assert out.reads["_registry/categories.json"] == 2, out.reads  # 100 without the cache


@dataclass
class RangeStore:
    """Records how the input is read: whole, or in ranges (and the largest range)."""

    inner: MemoryStore
    whole: list[str] = field(default_factory=list)
    ranges: list[int] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, name: str, generation: int | None = None) -> bytes:
        self.whole.append(name)
        return self.inner.read(name, generation)

    def read_range(self, name: str, start: int, end: int, generation: int | None = None) -> bytes:
        self.ranges.append(end - start)
        return self.inner.read_range(name, start, end, generation)


@pytest.mark.parametrize("name", ["batch.json", "batch.jsonl"])
def test_a_batch_past_one_chunk_is_read_in_ranges_with_the_same_outputs(name: str) -> None:
    jobs = [{"reference_id": f"j{i}", "width": 20, "height": 20,
             "maker_response": {"rectangles": {"data": [{**RECT, "label": f"c{i % 3}"}]}}}
            for i in range(40)]
    data = (b"\n".join(json.dumps(j).encode() for j in jobs) if name.endswith("l")
            else json.dumps(jobs).encode())
    results = []
    for chunk in (len(data), 1000):  # whole, then in ranges
        inner, out = MemoryStore("in"), MemoryStore("out")
        inner.write(name, data, "application/json")
        source = RangeStore(inner)
        config = Config(input_bucket="in", output_bucket="out",
                        limits=Limits(read_chunk_bytes=chunk))
        info = inner.stat(name)
        assert info is not None
        outcome = build_pipeline(config, source, out).process(
            SourceRef("in", name, info.generation, info.size))
        assert outcome.status == "converted", outcome
        results.append({n: out.read(n) for n in out.list()})
        if chunk == 1000:
            assert name not in source.whole and max(source.ranges) == 1000
            assert sum(source.ranges) >= 2 * len(data)  # two passes
        else:
            assert source.whole == [name] and not source.ranges
    assert results[0] == results[1]


@dataclass
class SlowStore:
    """Writes take `delay`; records when each write started and ended."""

    inner: MemoryStore = field(default_factory=MemoryStore)
    delay: Callable[[str], float] = lambda name: 0.0
    fail: str = ""
    log: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    now: int = 0
    peak: int = 0

    def write(self, name: str, data: bytes, content_type: str, if_generation_match: int | None = None) -> int:
        with self.lock:
            self.log.append(("start", name))
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self.delay(name))
            if name == self.fail:
                raise TransientError(f"cannot write {name}")
            return self.inner.write(name, data, content_type)
        finally:
            with self.lock:
                self.now -= 1
                self.log.append(("end", name))

    def stat(self, name: str) -> ObjectInfo | None:
        return self.inner.stat(name)


def test_a_report_waits_for_its_own_files_only() -> None:
    store = SlowStore(delay=lambda name: 0.2 if name.startswith("a/") else 0.01)
    with ThreadPoolExecutor(8) as pool:
        writer = Writer(store, pool, 16)  # type: ignore[arg-type]
        writer.group([("a/1", b"1"), ("a/2", b"2")], ("a/report", b"r"))
        writer.group([("b/1", b"1")], ("b/report", b"r"))
        writer.drain()
    order = store.log
    assert order.index(("start", "a/report")) > max(order.index(("end", "a/1")), order.index(("end", "a/2")))
    assert order.index(("start", "b/report")) > order.index(("end", "b/1"))
    assert order.index(("end", "b/report")) < order.index(("end", "a/1"))  # b did not wait for a
    assert store.peak >= 3  # concurrent
    assert writer.written == {"a/1", "a/2", "a/report", "b/1", "b/report"}


def test_a_failed_file_stops_its_report_and_surfaces_at_drain() -> None:
    store = SlowStore(fail="a/2")
    with ThreadPoolExecutor(4) as pool:
        writer = Writer(store, pool, 4)  # type: ignore[arg-type]
        writer.group([("a/1", b"1"), ("a/2", b"2")], ("a/report", b"r"))
        with pytest.raises(TransientError, match="a/2"):
            writer.drain()
    assert store.inner.stat("a/report") is None
    assert "a/2" not in writer.written


def test_writes_in_flight_are_bounded() -> None:
    store = SlowStore(delay=lambda name: 0.02)
    with ThreadPoolExecutor(16) as pool:
        writer = Writer(store, pool, 3)  # type: ignore[arg-type]
        for i in range(10):
            writer.group([(f"{i}/a", b""), (f"{i}/b", b"")])
        writer.drain()
    assert store.peak == 3
