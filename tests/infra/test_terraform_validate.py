"""The real `terraform init` and `terraform validate`, offline, against the lowest and the
newest provider versions versions.tf allows: a stub provider in a filesystem mirror serves
each version's real schema (tests/infra/terraform.py), Terraform does the checking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import provider_schema as ps
from tests.infra import stub_provider
from tests.infra import terraform as tf
from tests.infra.hcl import INFRA
from tests.infra.test_provider_schema import modules


def _version(pin: ps.Pin) -> tuple[int, ...]:
    return tuple(int(x) for x in pin.provider_version.split("."))


def _providers_pinned(pick: str) -> list[ps.Pin]:
    """One version per provider: the lowest or the newest of infra/provider-schemas.txt."""
    chooser = min if pick == "lowest" else max
    providers = sorted({p.provider for p in ps.pins()})
    return [chooser((p for p in ps.pins() if p.provider == name), key=_version)
            for name in providers]


def _copy(tmp_path: Path, old: str = "", new: str = "") -> Path:
    config = tmp_path / "infra"
    config.mkdir()
    replaced = 0
    for path in INFRA.glob("*.tf"):
        text = path.read_text()
        if old:
            replaced += text.count(old)
            text = text.replace(old, new, 1)
        (config / path.name).write_text(text)
    assert replaced or not old, f"{old!r} is not in infra/"
    return config


@pytest.mark.parametrize("pick", ["lowest", "newest"])
def test_infra_validates_against_the_real_schema(pick: str, tmp_path: Path) -> None:
    pins = _providers_pinned(pick)
    assert {p.provider for p in pins} == {"google", "time"}
    config = _copy(tmp_path)
    init, validate = tf.validate(config, pins, tmp_path, modules(config))
    assert init.returncode == 0, init.output
    for pin in pins:  # the mirror's stub, at exactly that version, is what was installed
        assert f"Installed hashicorp/{pin.provider} v{pin.provider_version}" in init.output
    assert validate.returncode == 0, validate.output
    assert validate.diagnostics() == []


@pytest.mark.parametrize(("old", "new", "summary", "detail"), [
    ("uniform_bucket_level_access = true", "uniform_bucket_level_acess = true",
     "Unsupported argument", '"uniform_bucket_level_acess" is not expected here'),
    ("google_storage_bucket.input.name", "google_storage_bucket.input.nme",
     "Unsupported attribute", 'named "nme"'),
    ("    event_filters {", "    event_filter {", "Unsupported block type",
     'Blocks of type "event_filter" are not expected here'),
    ('resource "google_service_account" "runtime"', 'resource "google_service_acount" "runtime"',
     "Invalid resource type", "does not support resource type"),
    ("uniform_bucket_level_access = true", 'uniform_bucket_level_access = "always"',
     "Incorrect attribute value type", "a bool is required"),
    ("  location                    = local.bucket_location\n", "",
     "Missing required argument", '"location" is required'),
    ("create_duration = var.service_agent_wait", "create_durations = var.service_agent_wait",
     "Unsupported argument", '"create_durations" is not expected here'),
])
def test_a_mistake_in_a_copy_of_infra_fails_validate(
    old: str, new: str, summary: str, detail: str, tmp_path: Path
) -> None:
    config = _copy(tmp_path, old, new)
    init, validate = tf.validate(config, _providers_pinned("newest"), tmp_path, modules(config))
    assert init.returncode == 0, init.output
    assert validate.returncode != 0
    found = [(d["summary"], d["detail"]) for d in validate.diagnostics()]
    assert any(s == summary and detail in d for s, d in found), found


def test_the_stub_refuses_to_run_outside_terraform(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"provider": {"attributes": [], "blocks": []}, "resources": {}, '
                      '"data": {}}')
    env = {k: v for k, v in os.environ.items() if k != stub_provider.COOKIE_KEY}
    done = subprocess.run([sys.executable, str(tf.STUB), str(schema)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "is a plugin" in done.stderr


def test_the_served_schema_keeps_types_and_required_arguments() -> None:
    (pin,) = [p for p in _providers_pinned("newest") if p.provider == "google"]
    schema = ps.wire_schema(pin, {"google_storage_bucket", "google_cloudfunctions2_function"},
                            {"google_project"})
    bucket = {a["name"]: a for a in schema["resources"]["google_storage_bucket"]["attributes"]}
    assert bucket["name"]["required"] and bucket["location"]["required"]
    assert bucket["uniform_bucket_level_access"]["type"] == "bool"
    assert bucket["labels"]["type"] == ["map", "string"]
    assert bucket["self_link"] == {"name": "self_link", "type": "string", "required": False,
                                   "optional": False, "computed": True}
    function = schema["resources"]["google_cloudfunctions2_function"]
    blocks = {b["name"]: b for b in function["blocks"]}
    assert blocks["service_config"]["max_items"] == 1
    service = {a["name"] for a in blocks["service_config"]["block"]["attributes"]}
    assert {"uri", "timeout_seconds", "available_cpu"} <= service  # computed and arguments
    events = {b["name"]: b for b in blocks["event_trigger"]["block"]["blocks"]}
    assert events["event_filters"]["max_items"] == 0  # a list of any length
    project = {a["name"]: a for a in schema["data"]["google_project"]["attributes"]}
    assert project["number"]["computed"] and not project["number"]["optional"]
