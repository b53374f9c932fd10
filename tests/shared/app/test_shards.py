"""Fan-out of big batches: shards in any order, concurrently, failing, repeated or stale
give byte for byte the outputs of one run, and the batch report only once every shard is
done.  The queue is a list (the real one is tested against gcloud-tasks-emulator in
tests/functions/test_fanout.py)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.app.pipeline import Outcome, Pipeline, SourceRef
from shared.app.runtime import build_converter
from shared.app.shards import FANOUT, SHARD_ROUTE, merged_report, shard_ranges, shard_task
from shared.config import Config
from shared.errors import ConversionError, TransientError
from shared.io.storage import MemoryStore

NAME = "exports/batch.json"
PREFIX = "exports/batch.json@"
REGISTRY = "_registry/categories.json"
JOBS = 23
SHARD_JOBS = 5  # 5 shards: 4 of 5 jobs, 1 of 3


def batch(label: str = "car", jobs: int = JOBS) -> bytes:
    """A batch with every kind of job a report tells apart: converted, failed (bad
    coordinates), without a reference id, and with a repeated one."""
    items: list[dict[str, Any]] = []
    for i in range(jobs):
        ref = None if i == 7 else ("twice" if i in (3, 15) else f"{label}-{i}")
        x = "bad" if i in (4, 18) else 0.1
        item: dict[str, Any] = {
            "image_url": f"https://x.example/{i}.jpg", "width": 100, "height": 80,
            "maker_response": {"rectangles": {"data": [
                {"_id": "r", "label": f"{label}{i % 3}",
                 "coordinates": [{"x": x, "y": .1}, {"x": .5, "y": .5}]}]}}}
        if ref is not None:
            item["reference_id"] = ref
        items.append(item)
    return json.dumps(items).encode()


class ListQueue:
    """Tasks by name, as Cloud Tasks keeps them: a repeated name is not a second task."""

    def __init__(self) -> None:
        self.tasks: dict[str, tuple[str, dict[str, Any]]] = {}
        self.lock = threading.Lock()

    def enqueue(self, name: str, route: str, body: Mapping[str, Any]) -> bool:
        with self.lock:
            if name in self.tasks:
                return False
            self.tasks[name] = (route, dict(body))
            return True


class Faulty(MemoryStore):
    """An output bucket whose write of `fail` raises, `times` times."""

    def __init__(self) -> None:
        super().__init__("out")
        self.fail, self.times = "", 0
        self.writes: list[str] = []

    def write(self, name: str, data: bytes, content_type: str,
              if_generation_match: int | None = None,
              metadata: dict[str, str] | None = None) -> int:
        with self._lock:
            if name == self.fail and self.times:
                self.times -= 1
                raise TransientError(f"injected: {name}")
            self.writes.append(name)
        return super().write(name, data, content_type, if_generation_match, metadata)


class World:
    def __init__(self, queue: ListQueue | None, shard_jobs: int = SHARD_JOBS) -> None:
        self.source, self.out = MemoryStore("in"), Faulty()
        self.now = 1_000_000.0
        self.queue = queue
        self.config = Config(input_bucket="in", shard_jobs=shard_jobs, fanout_lease_s=3600)

    def pipeline(self) -> Pipeline:
        converter = build_converter(self.config, self.out, open_bucket=False)
        return Pipeline(self.source, self.out, converter, 900, lambda: self.now, self.queue)

    def upload(self, data: bytes) -> SourceRef:
        generation = self.source.write(NAME, data, "application/json", metadata={})
        return SourceRef("in", NAME, generation, len(data))

    def shard(self, ref: SourceRef, index: int) -> Outcome:
        return self.pipeline().process_shard(ref, index)

    def files(self) -> dict[str, bytes]:
        return {n: self.out.read(n) for n in self.out.list(PREFIX + "/")}


def single_run(data: bytes) -> tuple[dict[str, bytes], bytes]:
    world = World(None)
    outcome = world.pipeline().process(world.upload(data))
    assert outcome.status == "partial"
    return world.files(), world.out.read(REGISTRY)


def fanned_out(data: bytes, registry: bytes) -> tuple[World, SourceRef, list[dict[str, Any]]]:
    """The batch's event fanned out (the registry seeded as the single run left it, so
    both give the same category ids whatever order shards run in)."""
    world = World(ListQueue())
    world.out.write(REGISTRY, registry, "application/json")
    ref = world.upload(data)
    outcome = world.pipeline().process(ref)
    assert outcome.status == "fanned_out", outcome
    assert world.queue is not None
    bodies = [body for route, body in world.queue.tasks.values() if route == SHARD_ROUTE]
    return world, ref, bodies


@pytest.fixture(scope="module")
def expected() -> tuple[dict[str, bytes], bytes]:
    return single_run(batch())


@given(st.integers(0, 10_000), st.integers(1, 10_000))
def test_shards_cover_every_job_once_in_order(jobs: int, size: int) -> None:
    ranges = shard_ranges(jobs, size)
    assert [p for r in ranges for p in r] == list(range(jobs))
    assert all(0 < len(r) <= size for r in ranges)
    assert len(ranges) == -(-jobs // size)


def test_a_task_names_only_its_shard_and_the_same_shard_is_the_same_task() -> None:
    name, body = shard_task("in", NAME, 7, 2)
    assert body == {"bucket": "in", "name": NAME, "generation": "7", "shard": 2}
    assert shard_task("in", NAME, 7, 2)[0] == name
    assert len({shard_task("in", NAME, g, i)[0] for g in (7, 8) for i in range(3)}) == 6


def test_one_shard_merges_to_its_own_report() -> None:
    base = {"converter": "c", "key": "k", "prefix": "p", "source": {}, "sources": []}
    jobs = [{"status": "converted"}, {"status": "failed"}]
    report = merged_report(base, [{"jobs": jobs, "outputs": ["b", "a"]}])
    assert report["status"] == "partial" and report["outputs"] == ["a", "b"]
    assert merged_report(base, [{"jobs": jobs[1:]}, {"jobs": jobs[1:]}])["status"] == "failed"


@pytest.mark.parametrize("seed", range(4))
def test_shards_in_any_order_give_the_single_run_byte_for_byte(
    expected: tuple[dict[str, bytes], bytes], seed: int
) -> None:
    world, ref, bodies = fanned_out(batch(), expected[1])
    assert sorted(b["shard"] for b in bodies) == list(range(5))
    random.Random(seed).shuffle(bodies)
    for done, body in enumerate(bodies, start=1):
        outcome = world.shard(ref, body["shard"])
        assert outcome.status in {"converted", "partial", "failed"}
        # Never a report (nor an error) before every shard is done.
        has_report = world.out.stat(f"{PREFIX}/report.json") is not None
        assert has_report == (done == len(bodies))
        assert world.out.stat(f"{PREFIX}/error.json") is None
    assert outcome.report is not None and "batch report written" in outcome.reason
    assert world.files() == expected[0]
    assert world.out.writes.count(f"{PREFIX}/report.json") == 1


def test_shards_running_at_once_write_the_report_once(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    world, ref, bodies = fanned_out(batch(), expected[1])

    def until_done(index: int) -> Outcome:
        while True:  # a shard that finds another completing the batch is retried
            try:
                return world.shard(ref, index)
            except TransientError:
                continue

    with ThreadPoolExecutor(5) as pool:
        outcomes = list(pool.map(until_done, [b["shard"] for b in bodies]))
    assert sum(o.report is not None for o in outcomes) == 1
    assert world.files() == expected[0]
    assert world.out.writes.count(f"{PREFIX}/report.json") == 1


def test_a_shard_failing_mid_way_is_retried_alone_with_the_same_result(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    world, ref, bodies = fanned_out(batch(), expected[1])
    world.out.fail, world.out.times = f"{PREFIX}/jobs/car-12/coco.json", 1
    failed = []
    for body in bodies:
        try:
            world.shard(ref, body["shard"])
        except TransientError:
            failed.append(body["shard"])
    assert failed == [2]  # jobs 10-14: car-10 and car-11 were written before it failed
    assert world.out.stat(f"{PREFIX}/report.json") is None
    before = list(world.out.writes)
    retried = world.shard(ref, 2)
    assert retried.report is not None
    again = world.out.writes[len(before):]
    assert all("/jobs/car-1" in n or "/shards/" in n or n.endswith(("report.json", "lock.json"))
               for n in again), again
    assert not any(f"/jobs/car-{i}/" in n for n in again for i in (0, 5, 9, 15, 20))
    assert world.files() == expected[0]


def test_a_repeated_shard_or_event_does_no_work_twice(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    world, ref, bodies = fanned_out(batch(), expected[1])
    assert world.shard(ref, 0).status == "partial"
    writes = len(world.out.writes)
    assert world.shard(ref, 0).status == "duplicate"
    # The event again, mid-way: the same tasks (deduplicated by name), the same plan.
    plan = world.out.read(f"{PREFIX}/{FANOUT}")
    again = world.pipeline().process(ref)
    assert again.status == "fanned_out" and "0 tasks enqueued now" in again.reason
    assert world.out.read(f"{PREFIX}/{FANOUT}") == plan
    assert world.out.writes[writes:] == [f"{PREFIX}/lock.json"]
    for body in bodies[1:]:
        world.shard(ref, body["shard"])
    assert world.files() == expected[0]
    assert world.shard(ref, 3).status == "duplicate"
    assert world.pipeline().process(ref).status == "duplicate"


def test_a_shard_the_plan_does_not_have_is_refused(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    world, ref, _ = fanned_out(batch(), expected[1])
    with pytest.raises(ConversionError) as caught:
        world.shard(ref, 5)
    assert caught.value.code == "invalid_shard"


def test_a_small_batch_or_no_queue_is_one_run() -> None:
    world = World(ListQueue(), shard_jobs=JOBS)
    assert world.pipeline().process(world.upload(batch())).status == "partial"
    assert world.queue is not None and not world.queue.tasks


def test_a_newer_generation_waits_for_a_live_fan_out_then_wins(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    world, old, bodies = fanned_out(batch(), expected[1])
    world.shard(old, 0)
    new = world.upload(batch("bus", jobs=6))
    with pytest.raises(TransientError, match="fan-out lease"):
        world.pipeline().process(new)
    world.now += 3601  # the fan-out's lease expired (its shards stalled)
    assert world.pipeline().process(new).status == "fanned_out"
    # The old generation's shards now do nothing; the new one's complete the batch.
    assert all(world.shard(old, b["shard"]).status == "skipped" for b in bodies)
    assert world.shard(new, 0).status == "partial" and world.shard(new, 1).report is not None
    report = json.loads(world.out.read(f"{PREFIX}/report.json"))
    assert report["source"]["generation"] == str(new.generation) and len(report["jobs"]) == 6
    # Only the new generation's files: the old one's jobs and shard records are gone.
    assert sorted([*report["outputs"], f"{PREFIX}/report.json"]) == sorted(world.files())


def test_a_stale_record_of_an_older_fan_out_does_not_complete_the_set(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    world, old, _ = fanned_out(batch(), expected[1])
    for index in (1, 2, 3, 4):
        world.shard(old, index)  # shard 0 never ran
    world.now += 3601
    new = world.upload(batch("bus"))
    assert world.pipeline().process(new).status == "fanned_out"
    for index in (0, 1, 2, 3):
        # Every record is there from shard 0 on, but the old ones are not this generation's.
        assert world.shard(new, index).report is None
        assert world.out.stat(f"{PREFIX}/report.json") is None
    assert world.shard(new, 4).report is not None
    report = json.loads(world.out.read(f"{PREFIX}/report.json"))
    assert all(job["key"].startswith("exports/batch/bus") or "~" in job["prefix"]
               for job in report["jobs"])
    assert sorted([*report["outputs"], f"{PREFIX}/report.json"]) == sorted(world.files())


def test_a_superseded_shard_is_skipped(expected: tuple[dict[str, bytes], bytes]) -> None:
    world, old, _ = fanned_out(batch(), expected[1])
    world.upload(batch("bus"))
    outcome = world.shard(old, 0)
    assert outcome.status == "skipped" and "superseded" in outcome.reason
    assert not any("/jobs/" in n for n in world.out.writes)


def test_a_report_already_written_is_never_replaced(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    """The completing shard writes the report with a does-not-exist precondition: a report
    some other writer put there first stays as it is."""
    world, ref, bodies = fanned_out(batch(), expected[1])
    for body in bodies[:-1]:
        world.shard(ref, body["shard"])
    world.out.write(f"{PREFIX}/report.json", b'{"written": "first"}', "application/json")
    assert world.shard(ref, bodies[-1]["shard"]).report is None
    assert world.out.read(f"{PREFIX}/report.json") == b'{"written": "first"}'


def test_a_shard_another_delivery_is_converting_is_retried_not_answered_done(
    expected: tuple[dict[str, bytes], bytes]
) -> None:
    world, ref, _ = fanned_out(batch(), expected[1])
    lease = {"sources": [ref.as_dict()], "expires": world.now + 100}
    world.out.write(f"{PREFIX}/shards/000000.lock", json.dumps(lease).encode(),
                    "application/json", if_generation_match=0)
    with pytest.raises(TransientError, match="retried later"):
        world.shard(ref, 0)
    world.now += 101  # that delivery died: its lease expires and this one takes over
    assert world.shard(ref, 0).status == "partial"
