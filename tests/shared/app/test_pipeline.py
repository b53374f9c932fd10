"""SPEC §6 generation order: whatever order two generations' events arrive in, and whichever
of them fails at whichever storage operation, an input's prefix ends up holding exactly its
newest generation's outputs, and the report is the last file written."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from shared.app.pipeline import Outcome, Pipeline, SourceRef
from shared.app.runtime import build_converter, fetch_policy
from shared.app.stages import Converter
from shared.config import Config
from shared.errors import ConversionError, TransientError
from shared.io.fetch import Fetcher, UrlReader
from shared.io.registry import CategoryRegistry
from shared.io.storage import MemoryStore, ObjectInfo
from shared.jsonio import dump_json
from tests.cocoutil import load_coco
from tests.httpserver import Answer, CountingServer, Drip

GOLDEN = Path(__file__).parents[2] / "data" / "golden" / "converter"
NAME = "exports/job.json"
PREFIX = "exports/job.json@"
LEASE_S = 900.0


def export(label: str) -> bytes:
    return json.dumps({"image_url": "https://x.example/a.jpg", "width": 100, "height": 80,
                       "maker_response": {"rectangles": {"data": [
                           {"_id": "r", "label": label,
                            "coordinates": [{"x": .1, "y": .1}, {"x": .5, "y": .5}]}]}}}).encode()


class Injected(TransientError):
    """A storage fault the test injects (a 503 after the library's retries)."""


Hook = Callable[[int, str, str], None]


@dataclass
class Recording:
    """The output bucket, recording every operation in order; `hook` runs before each one
    (it may raise a fault, or deliver another event in the middle of this one)."""

    inner: MemoryStore
    bucket: str = "out"
    ops: list[tuple[str, str]] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # the delivery each op belongs to
    hook: Hook | None = None
    delivery: int = 0

    def _op(self, kind: str, name: str) -> None:
        hook, self.hook = self.hook, None  # a nested event runs unhooked
        try:
            if hook is not None:
                hook(len(self.ops), kind, name)
        finally:
            self.hook = hook
        self.ops.append((kind, name))
        self.owners.append(self.delivery)

    def uri(self, name: str) -> str:
        return self.inner.uri(name)

    def stat(self, name: str) -> ObjectInfo | None:
        self._op("stat", name)
        return self.inner.stat(name)

    def read(self, name: str, generation: int | None = None) -> bytes:
        self._op("read", name)
        return self.inner.read(name, generation)

    def read_range(self, name: str, start: int, end: int, generation: int | None = None) -> bytes:
        self._op("read", name)
        return self.inner.read_range(name, start, end, generation)

    def read_if_exists(self, name: str) -> tuple[bytes, int] | None:
        self._op("read", name)
        return self.inner.read_if_exists(name)

    def write(self, name: str, data: bytes, content_type: str,
              if_generation_match: int | None = None,
              metadata: dict[str, str] | None = None) -> int:
        self._op("write", name)
        return self.inner.write(name, data, content_type, if_generation_match, metadata)

    can_copy_from_gcs = False

    def write_file(self, name: str, path: Path, content_type: str) -> int:
        self._op("write", name)
        return self.inner.write_file(name, path, content_type)

    def copy_from(self, bucket: str, name: str, target: str) -> int:
        self._op("write", target)
        return self.inner.copy_from(bucket, name, target)

    def list(self, prefix: str = "", suffixes: tuple[str, ...] = ()) -> list[str]:
        self._op("list", prefix)
        return self.inner.list(prefix, suffixes)

    def delete(self, name: str, if_generation_match: int | None = None) -> bool:
        self._op("delete", name)
        return self.inner.delete(name, if_generation_match)


class World:
    """A versioned input bucket, the recording output bucket, a clock and a pipeline."""

    def __init__(self) -> None:
        self.source = MemoryStore("in")
        self.out = Recording(MemoryStore("out"))
        self.now = 1_000_000.0
        converter = build_converter(Config(input_bucket="in"), self.out, open_bucket=False)
        self.pipeline = Pipeline(self.source, self.out, converter, LEASE_S, lambda: self.now)
        self.generations: dict[str, int] = {}
        self.deliveries = 0

    def upload(self, label: str) -> SourceRef:
        data = export(label)
        generation = self.source.write(NAME, data, "application/json", metadata={})
        self.generations[label] = generation
        return SourceRef("in", NAME, generation, len(data))

    def deliver(self, ref: SourceRef) -> Outcome:
        """One delivery; a completed run's operations must end in report, then release."""
        self.deliveries += 1
        me = self.deliveries
        outer, self.out.delivery = self.out.delivery, me
        try:
            outcome = self.pipeline.process(ref)
        finally:
            self.out.delivery = outer
        mine = [op for op, owner in zip(self.out.ops, self.out.owners, strict=True)
                if owner == me and op[0] in {"write", "delete"}
                and op[1].startswith(PREFIX + "/")]
        if outcome.status in {"converted", "failed"}:
            marker = f"{PREFIX}/{'report' if outcome.status == 'converted' else 'error'}.json"
            lock = ("delete", f"{PREFIX}/lock.json")
            body = mine[:-1] if mine[-1] == lock else mine  # a failed release is only logged
            assert mine[0] == ("write", f"{PREFIX}/lock.json"), mine
            assert body[-1] == ("write", marker), mine
        return outcome

    def until_done(self, ref: SourceRef) -> Outcome:
        """The platform's retries: again after each 5xx, time passing (a lease expiring)."""
        for _ in range(5):
            try:
                return self.deliver(ref)
            except TransientError:
                self.now += LEASE_S + 1
        raise AssertionError("never completed")

    def assert_outputs_of(self, label: str, stale_lease: bool = False) -> None:
        """Exactly the files `label`'s report lists, the report, and no lease (unless a
        release failed: the lease then stays until it expires or the next run)."""
        names = self.out.inner.list(PREFIX + "/")
        if stale_lease:
            names.remove(f"{PREFIX}/lock.json")
        report = json.loads(self.out.inner.read(f"{PREFIX}/report.json"))
        assert report["source"]["generation"] == str(self.generations[label])
        assert sorted([*report["outputs"], f"{PREFIX}/report.json"]) == names
        coco = json.loads(self.out.inner.read(f"{PREFIX}/coco.json"))
        assert [c["name"] for c in coco["categories"]] == [label]


def ops_of_one_run() -> int:
    world = World()
    ref = world.upload("old")
    world.deliver(ref)
    return len(world.out.ops)


STEPS = range(ops_of_one_run())


def test_a_run_is_lease_files_report_release() -> None:
    world = World()
    assert world.deliver(world.upload("old")).status == "converted"
    writes = [op for op in world.out.ops if op[0] in {"write", "delete"}]
    assert writes == [("write", f"{PREFIX}/lock.json"), ("delete", f"{PREFIX}/report.json"),
                      ("delete", f"{PREFIX}/error.json"),
                      ("write", "_registry/categories.json"), ("write", f"{PREFIX}/coco.json"),
                      ("write", f"{PREFIX}/report.json"), ("delete", f"{PREFIX}/lock.json")]
    world.assert_outputs_of("old")
    assert len(STEPS) >= len(writes)


@pytest.mark.parametrize("step", STEPS)
def test_newer_generation_arriving_at_each_step_of_an_older_run(step: int) -> None:
    world = World()
    old = world.upload("old")
    new: list[SourceRef] = []
    answered: list[Outcome] = []

    def arrive(index: int, kind: str, name: str) -> None:
        if index == step:
            new.append(world.upload("new"))
            with contextlib.suppress(TransientError):  # the lease is held: retried below
                answered.append(world.deliver(new[0]))

    world.out.hook = arrive
    first = world.deliver(old)
    world.out.hook = None
    assert first.status in {"converted", "skipped", "duplicate"}
    if not answered:  # the platform retries only an event that failed
        assert world.until_done(new[0]).status == "converted"
    else:
        assert answered[0].status == "converted"
    world.assert_outputs_of("new")
    late = world.deliver(old)  # a redelivery of the old event, late
    assert late.status == "skipped" and "superseded" in late.reason
    world.assert_outputs_of("new")


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("failing", ["old", "new"])
def test_a_fault_at_each_step_of_either_generation(step: int, failing: str) -> None:
    world = World()
    old = world.upload("old")
    if failing == "new":
        world.deliver(old)
        new = world.upload("new")
    faulted: list[tuple[str, str]] = []

    def fault(index: int, kind: str, name: str) -> None:
        if not faulted and index - start == step:
            faulted.append((kind, name))
            raise Injected(f"injected at {kind} {name}")

    start = len(world.out.ops)
    world.out.hook = fault
    try:
        outcome: Outcome | None = world.deliver(old if failing == "old" else new)
    except Injected:
        outcome = None
    world.out.hook = None
    if not faulted:  # this run has fewer operations than the longest one
        assert outcome is not None and step >= len(world.out.ops) - start
        return
    released = faulted == [("delete", f"{PREFIX}/lock.json")]
    # Only a failed release leaves the run standing (the lease then expires by itself).
    assert (outcome is not None) == released
    if failing == "old":
        new = world.upload("new")
        assert world.until_done(new).status == "converted"
        retried = world.until_done(old)
        assert retried.status == "skipped" and "superseded" in retried.reason
        world.assert_outputs_of("new")
    else:
        assert world.until_done(old).status == "skipped"  # the late old event
        again = world.until_done(new).status
        assert again == ("duplicate" if released else "converted")
        world.assert_outputs_of("new", stale_lease=released)


def test_a_crashed_writer_lease_expires_and_is_taken_over() -> None:
    world = World()
    ref = world.upload("old")
    world.out.inner.write(f"{PREFIX}/lock.json", json.dumps(
        {"sources": [{"bucket": "in", "name": NAME, "generation": "0"}],
         "expires": world.now + 10}).encode(), "application/json")
    with pytest.raises(TransientError, match="being written by another event"):
        world.deliver(ref)
    world.now += 11
    assert world.deliver(ref).status == "converted"
    world.assert_outputs_of("old")


def test_a_lease_held_by_a_newer_generation_stops_an_older_run() -> None:
    world = World()
    ref = world.upload("old")
    assert ref.generation is not None
    newer = {"sources": [{"bucket": "in", "name": NAME, "generation": str(ref.generation + 1)}],
             "expires": world.now + 10}
    world.out.inner.write(f"{PREFIX}/lock.json", json.dumps(newer).encode(), "application/json")
    outcome = world.deliver(ref)
    assert outcome.status == "skipped" and "newer generation holds" in outcome.reason
    assert world.out.inner.list(PREFIX + "/") == [f"{PREFIX}/lock.json"]


def test_a_redelivery_while_the_same_generation_is_converting_is_a_duplicate() -> None:
    world = World()
    ref = world.upload("old")
    seen: list[Outcome] = []

    def redeliver(index: int, kind: str, name: str) -> None:
        if (kind, name) == ("write", f"{PREFIX}/coco.json"):
            seen.append(world.deliver(ref))

    world.out.hook = redeliver
    assert world.deliver(ref).status == "converted"
    assert [o.status for o in seen] == ["duplicate"]
    world.assert_outputs_of("old")


def test_the_previous_report_goes_before_the_first_new_file() -> None:
    """A run that dies half-way leaves no report on top of a mix of files."""
    world = World()
    world.deliver(world.upload("old"))
    new = world.upload("new")

    def die(index: int, kind: str, name: str) -> None:
        if (kind, name) == ("write", f"{PREFIX}/coco.json"):
            raise Injected("injected")

    world.out.hook = die
    with pytest.raises(Injected):
        world.deliver(new)
    world.out.hook = None
    # The old coco.json is still there, but no report claims it.
    assert world.out.inner.list(PREFIX + "/") == [f"{PREFIX}/coco.json"]


def _image_bytes(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, fmt)
    return buffer.getvalue()


def test_every_frame_learns_its_own_size_from_the_first_url_that_works() -> None:
    """A real export's frames: plain-http CDN URLs without extensions, unrelated sizes;
    `src_original` tried before `src`; the CDN is a loopback server the resolver presents
    as a public host."""
    routes: dict[str, Answer | Callable[[], Answer] | Drip] = {
        "/f0": (200, {"Content-Type": "application/octet-stream"}, _image_bytes(64, 48, "JPEG")),
        "/f1": (200, {}, _image_bytes(100, 30, "PNG")),
        "/f2-original": (200, {}, _image_bytes(20, 90, "JPEG")),
    }
    with CountingServer(routes=routes) as cdn:
        base = f"http://cdn.example.com:{cdn.port}"
        frames = [{"frame_id": "0", "src": f"{base}/f0"},
                  {"frame_id": "1", "src_original": f"{base}/gone", "src": f"{base}/f1"},
                  {"frame_id": "2", "src_original": f"{base}/f2-original", "src": f"{base}/x"}]
        box = [{"x": .25, "y": .5}, {"x": .75, "y": .5}, {"x": .75, "y": 1}, {"x": .25, "y": 1}]
        doc = {"reference_id": "clip", "video_data": {"frames": frames}, "maker_response": {
            "video2d": {"data": {"annotations": [{
                "_id": "t", "type": "rectangle", "label": "car",
                "frames": {str(i): {"coordinates": box} for i in range(3)}}]}}}}
        policy = fetch_policy(Config(), trusted_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        converter = Converter(Config(), UrlReader(Fetcher(policy, lambda h, p: ["127.0.0.1"])),
                              CategoryRegistry(MemoryStore()))
        (parsed,) = converter.parse(doc)
        assert parsed.job is not None
        output = converter.convert(parsed.job, "clip")
    coco = load_coco(output.coco)
    sizes = {img["frame_id"]: (img["width"], img["height"]) for img in coco.dataset["images"]}
    assert sizes == {"0": (64, 48), "1": (100, 30), "2": (20, 90)}
    boxes = {coco.imgs[a["image_id"]]["frame_id"]: a["bbox"] for a in coco.dataset["annotations"]}
    assert boxes == {"0": [16.0, 24.0, 32.0, 24.0], "1": [25.0, 15.0, 50.0, 15.0],
                     "2": [5.0, 45.0, 10.0, 45.0]}
    assert [f["size_source"] for f in output.report["frames"]] == ["header"] * 3
    assert "/gone" in cdn.hits and "/x" not in cdn.hits
    assert sorted(cdn.hits) == ["/f0", "/f1", "/f2-original", "/gone"]  # each header read once
    # Golden: the whole COCO file (the server's port made stable).
    text = dump_json(output.coco).decode().replace(f":{cdn.port}/", ":{port}/")
    golden = GOLDEN / "cdn_frames.coco.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_a_frame_whose_urls_all_fail_names_each_failure() -> None:
    frames = [{"frame_id": "0", "src": "http://10.0.0.1/a", "src_original": "http://10.0.0.2/b"}]
    doc = {"video_data": {"frames": frames},
           "maker_response": {"video2d": {"data": {"annotations": []}}}}
    converter = Converter(Config(), UrlReader(Fetcher(fetch_policy(Config()))),
                          CategoryRegistry(MemoryStore()))
    (parsed,) = converter.parse(doc)
    assert parsed.job is not None
    with pytest.raises(ConversionError) as info:
        converter.convert(parsed.job, "clip")
    assert info.value.code == "image_size_unavailable"
    assert info.value.pointer == "/video_data/frames/0/src_original"
    assert "src_original: " in info.value.message and "src: " in info.value.message


def test_unknown_keys_are_counted_in_the_report_and_kept_keys_reach_coco() -> None:
    rect = {"label": "car", "coordinates": [{"x": 0, "y": 0}, {"x": .5, "y": .5}],
            "color": "#102030", "mystery": 1}
    doc = {"image_url": "u", "width": 10, "height": 10,
           "maker_response": {"rectangles": {"data": [rect, rect | {"other": 2}]}}}
    converter = Converter(Config(), UrlReader(Fetcher(fetch_policy(Config()))),
                          CategoryRegistry(MemoryStore()))
    (parsed,) = converter.parse(doc)
    assert parsed.job is not None
    output = converter.convert(parsed.job, "k")
    assert output.report["ignored_keys"] == {"mystery": 2, "other": 1}
    coco = load_coco(output.coco)
    assert [a["gt_color"] for a in coco.dataset["annotations"]] == [[16, 32, 48]] * 2


def test_a_redelivery_that_finishes_first_makes_the_slower_one_a_duplicate() -> None:
    """Both deliveries pass the early check; the second one finishes before the first takes
    the lease: the first, under the lease, finds the report and writes nothing."""
    world = World()
    ref = world.upload("old")
    outcomes: list[Outcome] = []

    def overtake(index: int, kind: str, name: str) -> None:
        if (kind, name) == ("write", f"{PREFIX}/lock.json") and not outcomes:
            outcomes.append(world.deliver(ref))

    world.out.hook = overtake
    start = len(world.out.ops)
    slow = world.deliver(ref)
    world.out.hook = None
    assert [o.status for o in outcomes] == ["converted"]
    assert slow.status == "duplicate"
    mine = [op for op, owner in zip(world.out.ops[start:], world.out.owners[start:], strict=True)
            if owner == 1 and op[0] in {"write", "delete"}]
    assert mine == [("write", f"{PREFIX}/lock.json"), ("delete", f"{PREFIX}/lock.json")]
    world.assert_outputs_of("old")


def test_a_repeated_event_writes_nothing_not_even_a_lease() -> None:
    world = World()
    ref = world.upload("old")
    assert world.deliver(ref).status == "converted"
    start = len(world.out.ops)
    assert world.deliver(ref).status == "duplicate"
    assert [op for op in world.out.ops[start:] if op[0] in {"write", "delete"}] == []
