from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.app.pipeline import SourceRef
from shared.app.runtime import build_pipeline
from shared.config import Config, Limits
from shared.errors import ConfigurationError, TooLargeError
from shared.io.registry import (
    REGISTRY_NAME,
    CategoryRegistry,
    ids_of,
    merge_labels,
    parse_seed,
)
from shared.io.storage import LocalStore, MemoryStore


@given(st.lists(st.lists(st.text(min_size=1, max_size=4), max_size=6), max_size=6))
def test_merge_is_append_only_and_dense(batches: list[list[str]]) -> None:
    registry: dict[str, Any] = {"categories": []}
    given_ids: dict[str, int] = {}
    for labels in batches:
        registry, _ = merge_labels(registry, labels)
        ids = {c["name"]: c["id"] for c in registry["categories"]}
        assert all(ids[k] == v for k, v in given_ids.items())  # an id never changes
        given_ids = ids
    assert sorted(given_ids.values()) == list(range(1, len(given_ids) + 1))


@pytest.mark.parametrize(("text", "expected"), [
    ('["person", "car"]', ["person", "car"]),
    ('{"categories": [{"id": 2, "name": "car"}, {"id": 1, "name": "person"}]}', ["person", "car"]),
    ("person\n\ncar\n", ["person", "car"]),
])
def test_seed_formats(text: str, expected: list[str]) -> None:
    assert parse_seed(text.encode()) == expected


def test_seed_makes_ids_independent_of_arrival_order() -> None:
    first, second = MemoryStore(), MemoryStore()
    CategoryRegistry(first, seed=["a", "b", "c"]).ensure(["c"])
    CategoryRegistry(second, seed=["a", "b", "c"]).ensure(["a", "b"])
    assert first.read(REGISTRY_NAME) == second.read(REGISTRY_NAME)


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_concurrent_writers_never_lose_or_duplicate_a_label(kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if kind == "memory" else LocalStore(tmp_path)

    def worker(i: int) -> dict[str, int]:
        return CategoryRegistry(store).ensure([f"label-{i}", "shared", f"label-{i % 3}"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(worker, range(20)))
    registry = json.loads(store.read(REGISTRY_NAME))
    names = [c["name"] for c in registry["categories"]]
    assert sorted(names) == sorted({"shared"} | {f"label-{i}" for i in range(20)})
    ids = {c["name"]: c["id"] for c in registry["categories"]}
    assert sorted(ids.values()) == list(range(1, len(ids) + 1))
    for result in results:  # every writer saw the final ids of its own labels
        assert all(ids[k] == v for k, v in result.items())


SMALL = Limits(max_label_chars=20, max_categories=30)


@given(st.lists(st.text(min_size=1, max_size=SMALL.max_label_chars), min_size=1,
                max_size=SMALL.max_categories, unique=True))
def test_a_full_registry_of_the_worst_labels_fits_its_read_limit(labels: list[str]) -> None:
    # Any characters at all: control characters are escaped to 6 bytes, the worst case.
    labels = [*labels, *("\x01" * SMALL.max_label_chars + str(i) for i in range(30))]
    labels = [lb[: SMALL.max_label_chars] for lb in labels][: SMALL.max_categories]
    labels = list(dict.fromkeys(labels))
    store = MemoryStore()
    registry = CategoryRegistry(store, limits=SMALL)
    registry.ensure(labels)
    assert len(store.read(REGISTRY_NAME)) <= SMALL.registry_max_bytes
    assert set(ids_of(registry.read())) == set(labels)


def test_labels_over_the_limits_are_poison_for_their_input_only() -> None:
    src, out = MemoryStore("in"), MemoryStore("out")
    pipeline = build_pipeline(Config(input_bucket="in", limits=SMALL), src, out,
                              open_bucket=False)

    def convert(name: str, *labels: str) -> Any:
        doc = {"image_url": "https://x.example/a.jpg", "width": 10, "height": 10,
               "maker_response": {"rectangles": {"data": [
                   {"_id": f"r{i}", "label": label,
                    "coordinates": [{"x": 0, "y": 0}, {"x": .5, "y": .5}]}
                   for i, label in enumerate(labels)]}}}
        src.write(name, json.dumps(doc).encode(), "application/json", metadata={})
        return pipeline.process(SourceRef("in", name))

    long = convert("long.json", "car", "x" * 21)
    assert long.status == "failed" and long.errors[0]["error"]["code"] == "label_too_long"
    assert long.errors[0]["error"]["pointer"] == "/maker_response/rectangles/data/1/label"
    assert convert("ok.json", "car").status == "converted"
    many = convert("many.json", *(f"c{i}" for i in range(30)))
    assert many.status == "failed" and many.errors[0]["error"]["code"] == "too_many_categories"
    assert [c["name"] for c in json.loads(out.read(REGISTRY_NAME))["categories"]] == ["car"]
    assert convert("again.json", "car").status == "converted"  # the registry still works


@pytest.mark.parametrize("damage", [b"{" * 10, b'{"categories": 3}', b" " * 300_000])
def test_a_damaged_or_oversized_registry_names_the_recovery(damage: bytes) -> None:
    store = MemoryStore()
    store.write(REGISTRY_NAME, damage, "application/json")
    with pytest.raises(ConfigurationError) as info:
        CategoryRegistry(store, limits=SMALL).ensure(["car"])
    assert REGISTRY_NAME in str(info.value)
    assert store.read(REGISTRY_NAME) == damage  # never overwritten by a guess


def test_the_registry_itself_refuses_over_long_labels() -> None:
    """Labels reach it from shapes and from raster legends: it checks every one itself."""
    store = MemoryStore()
    with pytest.raises(TooLargeError) as info:
        CategoryRegistry(store, limits=SMALL).ensure(["car", "x" * 21])
    assert info.value.code == "label_too_long"
    assert store.read_if_exists(REGISTRY_NAME) is None


def test_a_registry_edited_by_the_operator_is_seen_by_the_next_input() -> None:
    """Ids are cached for one input only: the README's recovery (remove unwanted labels,
    upload the registry again) takes effect at the next input, not at the next restart."""
    source, out = MemoryStore("in"), MemoryStore("out")
    rect = {"_id": "r", "coordinates": [{"x": 0.1, "y": 0.1}, {"x": 0.2, "y": 0.3}]}

    def upload(name: str, labels: list[str]) -> SourceRef:
        doc = {"width": 9, "height": 9, "maker_response": {"rectangles": {
            "data": [{**rect, "label": label} for label in labels]}}}
        source.write(name, json.dumps(doc).encode(), "application/json")
        info = source.stat(name)
        assert info is not None
        return SourceRef("in", name, info.generation)

    pipeline = build_pipeline(Config(input_bucket="in", output_bucket="out"), source, out)
    assert pipeline.process(upload("a.json", ["car", "junk"])).status == "converted"
    out.write(REGISTRY_NAME, json.dumps({"categories": [{"id": 1, "name": "car"}]}).encode(),
              "application/json")
    assert pipeline.process(upload("b.json", ["car"])).status == "converted"
    coco = json.loads(out.read("b.json@/coco.json"))
    assert [c["name"] for c in coco["categories"]] == ["car"]
