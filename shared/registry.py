"""Label -> category id registry: 1-based, append-only, stable across outputs and runs.

The pure part (`merge_labels`) decides ids; `CategoryRegistry` persists them with
optimistic concurrency (generation preconditions), so concurrent writers never lose or
duplicate a label and an id once given never changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ConversionError, TransientError
from .jsonio import dump_json, load_json
from .storage import ObjectStore, PreconditionFailed

REGISTRY_NAME = "_registry/categories.json"


def empty_registry() -> dict[str, Any]:
    return {"categories": []}


def merge_labels(registry: dict[str, Any], labels: Iterable[str]) -> tuple[dict[str, Any], bool]:
    """Give each unknown label the next id; existing ids never change."""
    categories = list(registry.get("categories", []))
    known = {c["name"] for c in categories}
    next_id = max((int(c["id"]) for c in categories), default=0) + 1
    changed = False
    for label in labels:
        if label not in known:
            categories.append({"id": next_id, "name": label})
            known.add(label)
            next_id += 1
            changed = True
    return {"categories": categories}, changed


def ids_of(registry: dict[str, Any]) -> dict[str, int]:
    return {c["name"]: int(c["id"]) for c in registry.get("categories", [])}


def parse_seed(data: bytes) -> list[str]:
    """The project's class list: a JSON list of names, COCO `categories`, or one name a line.

    COCO categories are taken in id order, so the registry reproduces their ids when it starts
    empty.
    """
    text = data.decode("utf-8-sig").strip()
    if text.startswith(("[", "{")):
        doc = load_json(data, max_depth=8, max_bytes=16 * 1024 * 1024)
        if isinstance(doc, dict):
            doc = doc.get("categories")
        if isinstance(doc, list) and all(isinstance(x, str) for x in doc):
            return [x.strip() for x in doc if x.strip()]
        if isinstance(doc, list) and all(isinstance(x, dict) and "name" in x for x in doc):
            return [str(x["name"]) for x in sorted(doc, key=lambda c: int(c.get("id", 0)))]
        raise ConversionError("invalid_categories", "categories file must list names")
    return [line.strip() for line in text.splitlines() if line.strip()]


class CategoryRegistry:
    """The registry object in an output store; `ensure` is safe under concurrent writers."""

    def __init__(
        self, store: ObjectStore, seed: list[str] | None = None, attempts: int = 50
    ) -> None:
        self.store, self.seed, self.attempts = store, seed or [], attempts

    def read(self) -> dict[str, Any]:
        found = self.store.read_if_exists(REGISTRY_NAME)
        return load_json(found[0], 8, 64 * 1024 * 1024) if found else empty_registry()

    def ensure(self, labels: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(labels))
        for _ in range(self.attempts):
            found = self.store.read_if_exists(REGISTRY_NAME)
            if found:
                current, generation = load_json(found[0], 8, 64 * 1024 * 1024), found[1]
            else:
                current, generation = empty_registry(), 0
            merged, changed = merge_labels(current, [*self.seed, *wanted])
            if not changed:
                return ids_of(merged)
            try:
                self.store.write(
                    REGISTRY_NAME,
                    dump_json(merged),
                    "application/json",
                    if_generation_match=generation,
                )
                return ids_of(merged)
            except PreconditionFailed:
                continue  # another writer won the race: re-read and merge again
        raise TransientError("category registry stayed contended; retry later")
