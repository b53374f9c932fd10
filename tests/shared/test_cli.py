from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.cli import main

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
