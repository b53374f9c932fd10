"""Builds the dataset the third-party readers load (`make compat`): the golden inputs and
the assembler tests' exports, converted with the command line, assembled with
`--images copy` from a local image server (so that readers which open images can).

    python -m tests.compat.build_dataset OUT
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from shared.app.assemble import Source
from shared.app.cli import main as cli
from shared.app.runtime import build_assembler, fetch_policy
from shared.config import Config
from shared.io.storage import LocalStore
from tests.httpserver import CountingServer
from tests.shared.app.test_assemble import exports

GOLDEN = Path(__file__).parents[1] / "data" / "golden" / "inputs"


def _image(width: int, height: int, seed: int, ext: str) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    return bytes(buffer.tobytes())


def build(target: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="gtcoco-compat-"))
    inputs = exports(work / "in")
    for path in GOLDEN.iterdir():
        if path.name != "sensor_fusion_camera_lidar.json":  # fails on purpose (unsupported)
            shutil.copy(path, inputs / f"golden_{path.name}")
    out = work / "out"
    code = cli(["convert", str(inputs), "--out", str(out), "-q"], out=io.StringIO())
    assert code == 0, f"convert exited {code}"
    # Every image URL of the outputs, served from 127.0.0.1 at its own size.
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    for coco_path in out.rglob("coco.json"):
        for image in json.loads(coco_path.read_text())["images"]:
            url = image.get("image_url") or ""
            if url.startswith(("http://", "https://")):
                route = "/" + url.split("://", 1)[1]
                ext = ".png" if route.lower().endswith(".png") else ".jpg"
                routes[route] = (200, {"Content-Type": f"image/{ext[1:]}"},
                                _image(image["width"], image["height"], len(routes), ext))
    with CountingServer(routes=routes) as server:
        for coco_path in out.rglob("coco.json"):
            text = re.sub(r'"https?://', f'"http://127.0.0.1:{server.port}/', coco_path.read_text())
            coco_path.write_text(text)
        config = Config()
        policy = fetch_policy(config, trusted_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        if target.exists():
            shutil.rmtree(target)
        assembler = build_assembler(config, LocalStore(target), policy=policy)
        result = assembler.run([Source(str(out), LocalStore(out))],
                               (("train", 0.7), ("val", 0.3)), "copy", "compat")
    # Raster pairs have no image, and a few golden jobs share one URL at two declared sizes:
    # give readers that open images one of the declared size.
    for split in ("train", "val"):
        doc = json.loads((target / "annotations" / f"instances_{split}.json").read_text())
        for image in doc["images"]:
            path = target / "images" / split / image["file_name"]
            found = cv2.imread(str(path)) if path.exists() else None
            if found is None or found.shape[:2] != (image["height"], image["width"]):
                path.parent.mkdir(parents=True, exist_ok=True)
                ext = ".png" if path.suffix.lower() == ".png" else ".jpg"
                path.write_bytes(_image(image["width"], image["height"], image["id"], ext))
    (target / ".gtcoco.lock").unlink(missing_ok=True)
    print(f"compat dataset: {target} ({len(result.copy_failures)} images not copied)")
    assert not result.copy_failures, result.copy_failures


if __name__ == "__main__":
    build(Path(sys.argv[1]))
