from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.registry import REGISTRY_NAME, CategoryRegistry, merge_labels, parse_seed
from shared.storage import LocalStore, MemoryStore


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
