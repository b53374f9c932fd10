from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.app.cli import main

JOB = {"image_url": "https://x.example/a.jpg", "width": 10, "height": 10,
       "maker_response": {"rectangles": {"data": [{"label": "car", "coordinates": [
           {"x": 0, "y": 0}, {"x": 1, "y": 1}]}]}}}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", [[], ["convert"], ["convert", "x.json"], ["frobnicate"],
                                  ["convert", "/does/not/exist", "--out", "/tmp/x"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*argv)[0] == 2


def test_all_converted_exits_0_with_a_summary(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_text(json.dumps(JOB))
    (tmp_path / "in" / "notes.txt").write_text("not an export")
    code, out, _ = run("convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert code == 0
    assert "skipped   notes.txt (extension is not one of .json, .jsonl, .png)" in out
    assert out.splitlines()[-1].startswith("gtcoco: 1 converted, 1 skipped; 2 objects written")
    assert (tmp_path / "out" / "a.json@" / "coco.json").exists()


def test_single_file_source_and_options(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    src.write_text(json.dumps(JOB))
    code, _, _ = run("convert", str(src), "--out", str(tmp_path / "o"), "--rect-as-polygon")
    assert code == 0
    coco = json.loads((tmp_path / "o" / "a.json@" / "coco.json").read_text())
    assert coco["annotations"][0]["segmentation"] == [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]]
    report = json.loads((tmp_path / "o" / "a.json@" / "report.json").read_text())
    assert report["options"]["rect_as_polygon"] is True


def test_seed_file_fixes_category_ids(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("person\nbike\ncar\n")
    (tmp_path / "a.json").write_text(json.dumps(JOB))
    assert run("convert", str(tmp_path / "a.json"), "--out", str(tmp_path / "o"),
               "--categories", str(tmp_path / "classes.txt"))[0] == 0
    coco = json.loads((tmp_path / "o" / "a.json@" / "coco.json").read_text())
    assert coco["categories"] == [{"id": 3, "name": "car", "supercategory": ""}]


def test_local_image_header_gives_the_size(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "img.jpg")
    job = {k: v for k, v in JOB.items() if k not in {"width", "height"}} | {"image_url": "img.jpg"}
    (tmp_path / "a.json").write_text(json.dumps(job))
    assert run("convert", str(tmp_path / "a.json"), "--out", str(tmp_path / "o"))[0] == 0
    report = json.loads((tmp_path / "o" / "a.json@" / "report.json").read_text())
    assert report["image"] == {"width": 64, "height": 48, "size_source": "header"}


def test_out_pointing_at_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(JOB))
    (tmp_path / "file").write_text("x")
    code, _, err = run("convert", str(tmp_path / "a.json"), "--out", str(tmp_path / "file"))
    assert code == 2 and "is a file" in err and "Traceback" not in err


def test_batch_jobs_named_like_outputs_or_paths_stay_in_their_folder(tmp_path: Path) -> None:
    refs = ["report.json", "../../escape", "a/b", "coco.json", "%2F", ".."]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "batch.json").write_text(json.dumps([JOB | {"reference_id": r}
                                                             for r in refs]))
    (tmp_path / "in" / "report.json").write_text(json.dumps(JOB))
    code, out, err = run("convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert code == 0, out + err
    made = sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*") if p.is_file()
                  and not p.name.startswith("."))
    batch = [m for m in made if m.startswith("batch.json@/")]
    assert len([m for m in batch if m.endswith("/coco.json")]) == len(refs)
    assert set(made) - set(batch) == {"_registry/categories.json", "report.json@/coco.json",
                                      "report.json@/report.json"}
    assert not (tmp_path / "escape").exists()


def test_an_input_name_too_long_for_its_outputs_fails_alone(tmp_path: Path) -> None:
    deep = tmp_path / "in" / "/".join(["d" * 200] * 5)
    deep.mkdir(parents=True)
    (deep / "long.json").write_text(json.dumps(JOB))
    (tmp_path / "in" / "short.json").write_text(json.dumps(JOB))
    code, out, err = run("convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert code == 1 and "Traceback" not in err
    assert "name_too_long" in out and "1 converted, 1 failed" in out
    (error,) = (tmp_path / "out" / "~long").rglob("error.json")
    assert json.loads(error.read_text())["error"]["code"] == "name_too_long"


def test_an_unreadable_input_fails_alone(tmp_path: Path) -> None:
    """A symlink out of the source folder is refused (it is not the user's export tree);
    the inputs around it still convert."""
    (tmp_path / "in").mkdir()
    (tmp_path / "secret.json").write_text(json.dumps(JOB))
    (tmp_path / "in" / "a_escape.json").symlink_to(tmp_path / "secret.json")
    (tmp_path / "in" / "b_dangling.json").symlink_to(tmp_path / "nowhere.json")
    (tmp_path / "in" / "ok.json").write_text(json.dumps(JOB))
    code, out, err = run("convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert "Traceback" not in err
    assert code == 1 and "a_escape.json" in out and "escapes" in out
    assert (tmp_path / "out" / "ok.json@" / "coco.json").exists()
    assert not (tmp_path / "out" / "a_escape.json@").exists()


def test_gs_sources_without_credentials_say_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "STORAGE_EMULATOR"))}
    env |= {"HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "shared.app.cli", "convert", "gs://some-bucket/x/",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "credentials" in result.stderr.lower() and "Traceback" not in result.stderr
