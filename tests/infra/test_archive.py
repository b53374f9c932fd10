"""The deploy archive: exactly what the functions import, and enough to run on its own."""

from __future__ import annotations

import io
import json
import os
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

from infra.build_archive import ROOT, archive_files, build_archive, main
from tests.cocoutil import load_coco
from tests.functions.harness import (
    function_env,
    function_server,
    object_data,
    post_event,
    storage_emulator,
)

pytestmark = pytest.mark.xdist_group("archive")
IN, OUT = "archive-in", "archive-out"


def test_archive_holds_the_import_closure_of_main_and_nothing_else() -> None:
    names = set(archive_files())
    assert {"main.py", "requirements.txt", "shared/__init__.py", "shared/app/service.py",
            "shared/io/storage.py", "shared/raster/regions.py"} <= names
    assert "shared/app/cli.py" not in names  # the command line is not deployed
    assert all(n in {"main.py", "requirements.txt"} or n.startswith("shared/") for n in names)
    assert all(n.endswith((".py", ".txt")) for n in names)


def test_archive_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert main(["--out", str(first)]) == 0
    assert main(["--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == sorted(archive_files())
        assert archive.read("main.py") == (ROOT / "functions" / "main.py").read_bytes()


def test_requirements_pin_every_package() -> None:
    lines = [line for line in (ROOT / "functions" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines and all("==" in line for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert {"functions-framework", "google-cloud-storage", "pycocotools", "numpy",
            "opencv-python-headless", "pillow", "urllib3", "certifi"} <= names
    assert "cloudevents==1.12.0" in lines


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The archive unpacked into an empty folder, with a fresh venv of its requirements."""
    root = tmp_path_factory.mktemp("deploy")
    source = root / "source"
    with zipfile.ZipFile(io.BytesIO(build_archive(archive_files()))) as archive:
        archive.extractall(source)
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(source / "requirements.txt")], check=True)
    return source, python


def _clean_env(env: dict[str, str]) -> dict[str, str]:
    # Nothing may reach the repository's own copy of the code.
    return {k: v for k, v in env.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


def test_the_fresh_venv_cannot_see_the_repository(deployed: tuple[Path, Path]) -> None:
    _, python = deployed
    probe = subprocess.run([str(python), "-c", "import shared"], cwd="/",
                           capture_output=True, text=True, env=_clean_env(dict(os.environ)))
    assert probe.returncode != 0 and "No module named 'shared'" in probe.stderr


def test_unpacked_archive_converts_a_real_cloudevent(deployed: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    source, python = deployed
    with storage_emulator(IN, OUT) as (url, client):
        body = json.dumps({
            "image_url": "https://cdn.example.com/a.jpg", "width": 640, "height": 480,
            "maker_response": {"rectangles": {"data": [{"_id": "r1", "label": "car",
                               "coordinates": [{"x": .1, "y": .2}, {"x": .4, "y": .6}]}]}},
        }).encode()
        blob = client.bucket(IN).blob("exports/job.json")
        blob.upload_from_string(body, content_type="application/json")
        env = _clean_env(function_env(url, IN, OUT))
        log = tmp_path / "function.log"
        with function_server("on_upload", "cloudevent", env, source=source / "main.py",
                             python=str(python), log=log) as function_url:
            response = post_event(function_url, object_data(IN, blob.name, blob.generation, len(body)))
        assert response.status_code == 200, log.read_text()
        outputs = {b.name: b.download_as_bytes() for b in client.list_blobs(OUT)}
        assert {"exports/job.json@/coco.json", "exports/job.json@/report.json"} <= set(outputs)
        coco = load_coco(outputs["exports/job.json@/coco.json"])
        (ann,) = coco.dataset["annotations"]
        assert ann["bbox"] == [64.0, 96.0, 192.0, 192.0]
