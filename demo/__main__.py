"""`make demo`: the whole pipeline on this machine, as it runs on Google Cloud.

Starts fake-gcs-server and both functions on 127.0.0.1, creates the buckets, uploads example
exports (vector job, segmentation job, raster pair, batch, one broken file), delivers the
finalize events the way Eventarc would, prints what landed where, assembles every output
into one dataset (POST /assemble, images copied) and prints its split table, draws the
dataset's annotations over its images (`gtcoco preview`), and shuts everything down.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import requests
from google.cloud import storage

from demo.examples import example_objects
from shared.app import layout
from shared.app.cli import main as cli
from tests.functions.harness import (
    function_env,
    function_server,
    object_data,
    post_event,
    storage_emulator,
)

IN, OUT = "demo-exports", "demo-coco"
OUTPUT_DIR = Path("demo-output")


def last_outcome(log: Path, name: str) -> str:
    """The function's own structured log line for this object."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("object") == name:
                return str(entry["message"])
    return "?"


def preview(client: storage.Client, export: str, image_name: str) -> Path:
    prefix = layout.input_prefix(export)
    coco = json.loads(client.bucket(OUT).blob(f"{prefix}/coco.json").download_as_bytes())
    data = client.bucket(IN).blob(image_name).download_as_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"demo: {image_name} is not an image")
    for ann in coco["annotations"]:
        color = tuple(int(v) for v in np.random.default_rng(ann["category_id"]).integers(60, 255, 3))
        x, y, w, h = (round(v) for v in ann["bbox"])
        cv2.rectangle(image, (x, y), (x + w, y + h), color, 2)
        if isinstance(ann.get("segmentation"), list):
            for poly in ann["segmentation"]:
                pts = np.array(poly, np.float64).reshape(-1, 2).round().astype(np.int32)
                cv2.polylines(image, [pts], True, color, 2)
        for i in range(0, len(ann.get("keypoints", [])), 3):
            kx, ky, v = ann["keypoints"][i:i + 3]
            if v:
                cv2.circle(image, (int(kx), int(ky)), 4, color, -1)
        name = next(c["name"] for c in coco["categories"] if c["id"] == ann["category_id"])
        cv2.putText(image, name, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1)
    path = OUTPUT_DIR / "previews" / f"{Path(export).stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def main() -> int:
    os.environ["NO_GCE_CHECK"] = "true"
    shutil.rmtree(OUTPUT_DIR, ignore_errors=True)
    with storage_emulator(IN, OUT, project="demo") as (url, client):
        print(f"fake-gcs-server on {url}; buckets gs://{IN} -> gs://{OUT}")
        env = function_env(url, IN, OUT)
        log = OUTPUT_DIR / "on_upload.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with function_server("on_upload", "cloudevent", env, log=log) as trigger, \
                function_server("api", "http", env) as api:
            print(f"on_upload on {trigger}, api on {api}\n")
            print(f"{'uploaded':<34} {'event':<6} outcome")
            for name, data, content_type in example_objects():
                blob = client.bucket(IN).blob(name)
                blob.upload_from_string(data, content_type=content_type)
                response = post_event(trigger, object_data(IN, name, blob.generation, len(data)))
                print(f"{name:<34} {response.status_code:<6} {last_outcome(log, name)}")
            converted = requests.post(f"{api}/convert", timeout=60, json=json.loads(
                client.bucket(IN).blob("exports/street.json").download_as_bytes()))
            print(f"\nPOST /convert exports/street.json -> {converted.status_code}, "
                  f"{len(converted.json()['annotations'])} annotations")
            # Every converted export -> one dataset: COCO files per split and task.
            assembled = requests.post(f"{api}/assemble", timeout=300, json={
                "prefix": "", "name": "demo-v1", "splits": {"train": 0.7, "val": 0.3},
                "images": "copy"})
            answer = assembled.json()
            print(f"\nPOST /assemble -> {assembled.status_code}: {answer.get('dataset')}")
            print(f"  {'split':<8} {'images':>6} {'instances':>9} {'keypoints':>9} {'panoptic':>8}")
            for split, counts in answer.get("splits", {}).items():
                print(f"  {split:<8} {counts['images']:>6} {counts['instances']:>9} "
                      f"{counts['keypoints']:>9} {counts['panoptic_images']:>8}")
        print(f"\nwhat landed in gs://{OUT}:")
        for blob in client.list_blobs(OUT):
            print(f"  {blob.name:<52} {blob.size:>8} bytes")
        previews = [preview(client, "exports/street.json", "images/street.jpg"),
                    preview(client, "exports/parking.json", "images/parking.png")]
        for blob in client.list_blobs(OUT):
            target = OUTPUT_DIR / "bucket" / blob.name
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))
        print(f"\npreviews: {', '.join(str(p) for p in previews)}")
        # The dataset drawn: every image with its boxes, polygons, regions and keypoints.
        dataset = OUTPUT_DIR / "bucket" / "datasets" / "demo-v1"
        cli(["preview", str(dataset), "--out", str(OUTPUT_DIR / "dataset-previews")])
        failed = answer.get("images", {}).get("failed", [])
        if failed:
            print(f"images not copied (no network here): {', '.join(f['url'] for f in failed)}")
        print(f"all outputs copied to {OUTPUT_DIR}/bucket/")
        return 0


if __name__ == "__main__":
    sys.exit(main())
