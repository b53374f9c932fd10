"""Label -> category id registry: 1-based, append-only, stable across outputs and runs.

The pure part (`merge_labels`) decides ids; `CategoryRegistry` persists them with
optimistic concurrency (generation preconditions), so concurrent writers never lose or
duplicate a label and an id once given never changes.

Bounded: a label longer than `max_label_chars`, or one that would take the registry past
`max_categories`, is poison for the input that brings it, so the registry can never grow past
`Limits.registry_max_bytes`, the size it is read with.  A registry larger than that (written
by hand, or before the limits were lowered) stops conversions with a configuration error
naming the recovery (README: "Category registry").
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from shared.config import Limits
from shared.errors import ConfigurationError, ConversionError, TooLargeError, TransientError
from shared.io.storage import ObjectStore, PreconditionFailed
from shared.jsonio import dump_json, load_json
from shared.retry import Backoff, attempts

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


def check_labels(labels: Iterable[str], limits: Limits) -> None:
    for label in labels:
        if len(label) > limits.max_label_chars:
            raise TooLargeError(
                "label_too_long",
                f"label {label[:40]!r}... is {len(label)} characters, limit "
                f"{limits.max_label_chars} (GTCOCO_MAX_LABEL_CHARS)",
            )


class CategoryRegistry:
    """The registry object in an output store; `ensure` is safe under concurrent writers."""

    def __init__(
        self,
        store: ObjectStore,
        seed: list[str] | None = None,
        backoff: Backoff | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store, self.seed = store, seed or []
        self.backoff = backoff or Backoff()
        self.limits = limits or Limits()
        check_labels(self.seed, self.limits)
        # Ids never change once given, so the ids last read or written answer any request
        # they cover without a read: a batch's jobs mostly repeat the same labels.  Kept for
        # one input (`forget` at the start of each), so a registry restored or edited by
        # the operator is seen by the next one.
        self._known: dict[str, int] = {}
        self._lock = threading.Lock()

    def _load(self, data: bytes) -> dict[str, Any]:
        limit = self.limits.registry_max_bytes
        try:
            doc = load_json(data, 8, limit)
        except ConversionError as exc:
            raise ConfigurationError(
                f"{REGISTRY_NAME} is unreadable ({exc.message}); it is larger than "
                f"{limit} bytes or damaged. Recover by restoring it from the bucket's object "
                "versions, or by removing the labels you do not want and uploading it again "
                "(ids of the labels kept must not change)"
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("categories"), list):
            raise ConfigurationError(f"{REGISTRY_NAME} does not hold a categories list")
        return doc

    def read(self) -> dict[str, Any]:
        found = self.store.read_if_exists(REGISTRY_NAME)
        return self._load(found[0]) if found else empty_registry()

    def forget(self) -> None:
        with self._lock:
            self._known = {}

    def ensure(self, labels: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(labels))
        check_labels(wanted, self.limits)
        with self._lock:
            known = self._known
            if known and all(label in known for label in [*self.seed, *wanted]):
                return dict(known)
        ids = self._ensure(wanted)
        with self._lock:
            if len(ids) > len(self._known):
                self._known = ids
        return dict(ids)

    def _ensure(self, wanted: list[str]) -> dict[str, int]:
        for _ in attempts(self.backoff):
            found = self.store.read_if_exists(REGISTRY_NAME)
            if found:
                current, generation = self._load(found[0]), found[1]
            else:
                current, generation = empty_registry(), 0
            merged, changed = merge_labels(current, [*self.seed, *wanted])
            if not changed:
                return ids_of(merged)
            if len(merged["categories"]) > self.limits.max_categories:
                raise TooLargeError(
                    "too_many_categories",
                    f"the labels of this input would take the registry to "
                    f"{len(merged['categories'])} categories, limit "
                    f"{self.limits.max_categories} (GTCOCO_MAX_CATEGORIES)",
                )
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
