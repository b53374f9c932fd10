"""infra/ against the real providers' schemas (the lowest and newest versions allowed),
offline: every type, argument, nested block and attribute reference."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.infra import provider_schema as ps
from tests.infra.hcl import INFRA, _plain

PINS = ps.pins()


def modules(root: Path = INFRA) -> list[dict[str, Any]]:
    return [_plain(hcl2.loads(p.read_text())) for p in sorted(root.glob("*.tf"))]


@pytest.fixture(scope="module", params=PINS, ids=[f"{p.provider}-{p.provider_version}" for p in PINS])
def schema(request: pytest.FixtureRequest) -> ps.Schema:
    resources, data = ps.used_types(modules())
    return ps.load_schema(request.param, resources, data)


def test_the_pins_are_the_lowest_and_newest_versions_allowed() -> None:
    text = (INFRA / "versions.tf").read_text()
    for provider in ("google", "time"):
        block = re.search(rf"{provider} = \{{[^}}]*version\s*=\s*\"([^\"]+)\"", text)
        assert block is not None
        low = re.search(r">=\s*([\d.]+)", block[1])
        high = re.search(r"<\s*([\d.]+)", block[1])
        assert low and high
        versions = [tuple(int(x) for x in p.provider_version.split("."))
                    for p in PINS if p.provider == provider]
        bound = tuple(int(x) for x in low[1].split("."))
        assert all(v < tuple(int(x) for x in high[1].split(".")) for v in versions)
        assert min(versions)[:len(bound)] == bound  # the lowest allowed, exactly


def test_infra_uses_only_what_the_provider_has(schema: ps.Schema) -> None:
    resources, data = ps.used_types(modules())
    mine = {t for t in resources | data if t.startswith(f"{schema.provider}_")}
    assert mine and mine <= set(schema.resources) | set(schema.data)
    assert ps.check(modules(), schema) == []


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("uniform_bucket_level_access = true", "uniform_bucket_level_acess = true",
     "no argument or block named 'uniform_bucket_level_acess'"),
    ("timeout_seconds                  = var.trigger_function",
     "timeout_second                   = var.trigger_function",
     "service_config[0]: no argument or block named 'timeout_second'"),
    ("google_storage_bucket.input.name", "google_storage_bucket.input.nme",
     "no attribute 'nme'"),
    ('resource "google_service_account" "runtime"', 'resource "google_service_acount" "runtime"',
     "no such resource"),
    ("    event_filters {", "    event_filter {", "no argument or block named 'event_filter'"),
    ("create_duration = var.service_agent_wait", "create_durations = var.service_agent_wait",
     "no argument or block named 'create_durations'"),
])
def test_a_misspelling_in_a_copy_of_infra_fails(
    old: str, new: str, problem: str, tmp_path: Path
) -> None:
    changed = False
    for path in INFRA.glob("*.tf"):
        text = path.read_text()
        changed |= old in text
        (tmp_path / path.name).write_text(text.replace(old, new, 1))
    assert changed, old
    found = []
    for pin in PINS:
        resources, data = ps.used_types(modules(tmp_path))
        found += ps.check(modules(tmp_path), ps.load_schema(pin, resources, data))
    assert any(problem in p for p in found), found
