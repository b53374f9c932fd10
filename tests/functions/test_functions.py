"""End to end: fake-gcs-server + real functions-framework processes + real CloudEvents."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.cocoutil import load_coco
from tests.functions.conftest import (
    IN,
    OUT,
    Gcs,
    Trigger,
    generations,
    job,
    outputs,
    upload,
)
from tests.functions.harness import (
    ROOT,
    FaultProxy,
    function_env,
    post_event,
)
from tests.masks import encode_png

pytestmark = pytest.mark.xdist_group("functions")


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_vector_job_converts_in_both_event_modes(gcs: Gcs, trigger: Trigger, mode: str) -> None:
    _, client = gcs
    data = upload(client, f"{mode}/job.json", json.dumps(job()).encode())
    response = post_event(trigger[0], data, mode)
    assert response.status_code == 200, response.text
    got = outputs(client, f"{mode}/job.json@/")
    assert sorted(got) == [f"{mode}/job.json@/coco.json", f"{mode}/job.json@/report.json"]
    coco = load_coco(got[f"{mode}/job.json@/coco.json"])
    assert len(coco.dataset["annotations"]) == 2
    report = json.loads(got[f"{mode}/job.json@/report.json"])
    assert report["source"] == {"bucket": IN, "name": f"{mode}/job.json",
                                "generation": data["generation"]}
    assert report["outputs"] == [f"{mode}/job.json@/coco.json"]


def test_segmentation_job_reads_its_mask_through_the_adapter(gcs: Gcs, trigger: Trigger) -> None:
    _, client = gcs
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[10:30, 10:40] = (0, 0, 255, 255)  # BGRA: red
    rgba[40:, :] = (0, 255, 0, 255)
    upload(client, "seg/mask.png", encode_png(rgba), "image/png")
    seg = {"image_url": "https://cdn.example.com/s.jpg", "maker_response": {"raster": {"data": {
        "url": f"gs://{IN}/seg/mask.png", "legend": {"#ff0000": "car # 1", "#00ff00": "grass"}}}}}
    response = post_event(trigger[0], upload(client, "seg/job.json", json.dumps(seg).encode()))
    assert response.status_code == 200
    got = outputs(client, "seg/job.json@/")
    assert {"seg/job.json@/masks/legend.json", "seg/job.json@/masks/semantic.png",
            "seg/job.json@/masks/instances.png", "seg/job.json@/masks/colors/ff0000.png",
            "seg/job.json@/masks/colors/00ff00.png"} <= set(got)
    coco = load_coco(got["seg/job.json@/coco.json"])
    assert sorted(a["area"] for a in coco.dataset["annotations"]) == [600, 1600]


def test_batch_and_poison_inputs(gcs: Gcs, trigger: Trigger) -> None:
    _, client = gcs
    lines = "\n".join(json.dumps(job(label=f"b{i}") | {"reference_id": f"j{i}"})
                      for i in range(3))
    assert post_event(trigger[0], upload(client, "batch/all.jsonl", lines.encode())
                      ).status_code == 200
    for i in range(3):
        load_coco(outputs(client, f"batch/all.jsonl@/jobs/j{i}/")[f"batch/all.jsonl@/jobs/j{i}/coco.json"])
    response = post_event(trigger[0], upload(client, "bad/broken.json", b'{"image_url": '))
    assert response.status_code == 200  # poison input is never retried
    got = outputs(client, "bad/")
    assert sorted(got) == ["bad/broken.json@/error.json"]
    error = json.loads(got["bad/broken.json@/error.json"])
    assert error["error"]["code"] == "invalid_json"
    log_lines = [json.loads(line) for line in trigger[1].read_text().splitlines()
                 if line.startswith("{")]
    failed = [e for e in log_lines if e.get("object") == "bad/broken.json"]
    assert len(failed) == 1 and failed[0]["severity"] == "ERROR"
    assert {"event_id", "bucket", "generation", "outcome", "duration_ms"} <= set(failed[0])
    # What infra/monitoring.tf's log-based metric counts, by its label.
    assert failed[0]["logger"] == "gtcoco" and failed[0]["outcome"] == "failed"
    assert failed[0]["error_code"] == "invalid_json"
    # Fixed and uploaded again: it converts, and the stale error goes.
    response = post_event(trigger[0], upload(client, "bad/broken.json", json.dumps(job()).encode()))
    assert response.status_code == 200
    got = outputs(client, "bad/")
    assert sorted(got) == ["bad/broken.json@/coco.json", "bad/broken.json@/report.json"]
    load_coco(got["bad/broken.json@/coco.json"])


def test_storage_fault_gives_500_and_a_clean_retry_completes_identically(gcs: Gcs, trigger: Trigger,
                                                                         proxy: FaultProxy) -> None:
    _, client = gcs
    body = json.dumps(job(label="fault")).encode()
    reference = upload(client, "fault/clean.json", body)
    assert post_event(trigger[0], reference).status_code == 200
    data = upload(client, "fault/job.json", body)
    prefix = "fault/job.json@/"
    proxy.fail_uploads(prefix + "coco.json", count=1000)  # outlasts the library's retries
    start = len(proxy.writes)
    first = post_event(trigger[0], data)
    proxy.fail_uploads("", count=0)
    assert first.status_code == 500 and proxy.injected >= 1
    assert prefix + "report.json" not in outputs(client, prefix)  # nothing looks done
    middle = len(proxy.writes)
    assert post_event(trigger[0], data).status_code == 200
    got, clean = outputs(client, prefix), outputs(client, "fault/clean.json@/")
    assert got[prefix + "coco.json"] == clean["fault/clean.json@/coco.json"]
    assert sorted(json.loads(got[prefix + "report.json"])["outputs"]) == [prefix + "coco.json"]
    # The order of writes: the lease first, the report after every file, then the release.
    failed = [w for w in proxy.writes[start:middle] if w[1].startswith(prefix)]
    assert ("upload", prefix + "report.json") not in failed
    retried = [w for w in proxy.writes[middle:] if w[1].startswith(prefix)]
    assert retried[0] == ("upload", prefix + "lock.json")
    assert retried[-2:] == [("upload", prefix + "report.json"), ("delete", prefix + "lock.json")]
    assert retried.index(("upload", prefix + "coco.json")) < len(retried) - 2


def test_repeated_delivery_gives_one_set_of_outputs(gcs: Gcs, trigger: Trigger) -> None:
    _, client = gcs
    data = upload(client, "dup/job.json", json.dumps(job()).encode())
    event_id = uuid.uuid4().hex
    assert post_event(trigger[0], data, event_id=event_id).status_code == 200
    before = generations(client, "dup/")
    for _ in range(4):
        assert post_event(trigger[0], data, event_id=event_id).status_code == 200
    assert generations(client, "dup/") == before  # nothing rewritten
    data = upload(client, "dup/concurrent.json", json.dumps(job()).encode())
    with ThreadPoolExecutor(5) as pool:
        codes = list(pool.map(lambda _: post_event(trigger[0], data).status_code, range(5)))
    assert codes == [200] * 5
    got = outputs(client, "dup/concurrent.json@/")
    assert sorted(got) == ["dup/concurrent.json@/coco.json", "dup/concurrent.json@/report.json"]
    assert got["dup/concurrent.json@/coco.json"] == outputs(client, "dup/job.json@/")["dup/job.json@/coco.json"]


def test_own_outputs_and_stale_events_do_nothing(gcs: Gcs, trigger: Trigger) -> None:
    _, client = gcs
    body = json.dumps(job()).encode()
    own = upload(client, "loop/job.json", body) | {"metadata": {"gtcoco-output": "1"}}
    output_name = upload(client, "loop/x.json@/report.json", body)
    stale = upload(client, "loop/stale.json", body)
    for data, when in ((own, None), (output_name, None), (stale, "2020-01-01T00:00:00Z")):
        assert post_event(trigger[0], data, event_time=when).status_code == 200
    assert outputs(client, "loop/") == {}


def test_equal_buckets_refuse_to_start(gcs: Gcs) -> None:
    env = function_env(gcs[0], IN, IN)
    result = subprocess.run(
        [sys.executable, "-m", "functions_framework", "--source",
         str(ROOT / "functions" / "main.py"), "--target", "on_upload", "--signature-type",
         "cloudevent", "--port", "0"], env=env, capture_output=True, timeout=60, check=False)
    assert result.returncode != 0
    assert b"INPUT_BUCKET and OUTPUT_BUCKET are both" in result.stderr + result.stdout


def test_process_runs_the_trigger_for_input_objects_only(gcs: Gcs, api: str) -> None:
    _, client = gcs
    upload(client, "http/job.json", json.dumps(job()).encode())
    response = requests.post(f"{api}/process", json={"bucket": IN, "name": "http/job.json"},
                             timeout=60)
    assert response.status_code == 200
    assert response.json()["status"] == "converted"
    load_coco(outputs(client, "http/job.json@/")["http/job.json@/coco.json"])
    again = requests.post(f"{api}/process", json={"bucket": IN, "name": "http/job.json"},
                          timeout=60)
    assert again.json()["status"] == "duplicate"
    other = requests.post(f"{api}/process", json={"bucket": OUT, "name": "x.json"}, timeout=60)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "bucket_not_allowed"


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b'{"image_url": ', "application/json", 400, "invalid_json"),
    (b"x" * (2 << 20), "application/json", 413, "body_too_large"),
    (b"<html></html>", "text/html", 415, "unsupported_media_type"),
    (b'{"hello": 1}', "application/json", 422, "unknown_shape"),
    (json.dumps(job(size=False) | {"image_url": "http://169.254.169.254/x.jpg"}).encode(),
     "application/json", 422, "image_size_unavailable"),
])
def test_convert_errors_are_json(
    api: str, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = requests.post(f"{api}/convert", data=body, timeout=60,
                             headers={"Content-Type": content_type})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and "pointer" in error


def test_convert_returns_coco(api: str) -> None:
    response = requests.post(f"{api}/convert", json=job(), timeout=60)
    assert response.status_code == 200
    load_coco(response.json())
    assert requests.get(f"{api}/convert", timeout=60).status_code == 405
    assert requests.post(f"{api}/nope", json={}, timeout=60).status_code == 404


def test_cli_reads_and_writes_gs(gcs: Gcs, tmp_path: Path) -> None:
    _, client = gcs
    upload(client, "cli/a.json", json.dumps(job()).encode())
    result = subprocess.run([sys.executable, "-m", "shared.app.cli", "convert", f"gs://{IN}/cli/",
                             "--out", f"gs://{OUT}/from-cli"], capture_output=True, text=True,
                            timeout=120, check=False, env=function_env(gcs[0], IN, OUT))
    assert result.returncode == 0, result.stderr
    load_coco(outputs(client, "from-cli/cli/a.json@/")["from-cli/cli/a.json@/coco.json"])



def test_cli_assembles_gs_outputs_into_gs_copying_images_inside_storage(gcs: Gcs) -> None:
    _, client = gcs
    images = {f"asm-images/cam{c}/0001.png": b"\x89PNG image %d" % c for c in range(3)}
    for name, data in images.items():
        upload(client, name, data, "image/png")
    for c in range(3):
        upload(client, f"asm/cam{c}.json", json.dumps(
            {**job(), "reference_id": f"cam{c}/0001",
             "image_url": f"gs://{IN}/asm-images/cam{c}/0001.png"}).encode())
    # An image in a bucket outside the allow-list: refused, reported, not copied.
    upload(client, "asm/other.json", json.dumps(
        {**job(), "reference_id": "other/0001",
         "image_url": f"gs://{OUT}/asm-images/other/0001.png"}).encode())
    client.bucket(OUT).blob("asm-images/other/0001.png").upload_from_string(b"\x89PNG other")
    env = function_env(gcs[0], IN, OUT)
    for argv, code in ((["convert", f"gs://{IN}/asm/", "--out", f"gs://{OUT}/asm-out"], 0),
                       (["assemble", f"gs://{OUT}/asm-out", "--out", f"gs://{OUT}/asm-ds",
                         "--images", "copy", "--split", "all=1"], 1)):
        result = subprocess.run([sys.executable, "-m", "shared.app.cli", *argv],
                                capture_output=True, text=True, timeout=120, check=False, env=env)
        assert result.returncode == code, result.stdout + result.stderr
    assert f"image not copied: gs://{OUT}/asm-images/other/0001.png" in result.stdout
    found = outputs(client, "asm-ds/")
    coco = load_coco(found["asm-ds/annotations/instances_all.json"])
    names = sorted(i["file_name"] for i in coco.dataset["images"])
    assert names == [f"{IN}/asm-images/cam{c}/0001.png" for c in range(3)] + [
        f"{OUT}/asm-images/other/0001.png"]
    for name in names[:3]:
        assert found[f"asm-ds/images/all/{name}"] == images[name.split("/", 1)[1]]
    assert f"asm-ds/images/all/{names[3]}" not in found
    manifest = json.loads(found["asm-ds/dataset.json"])
    assert manifest["images"]["copied"] == 3 and len(manifest["images"]["failed"]) == 1
    assert {i["name"] for i in manifest["inputs"]} == {
        *(f"asm/cam{c}.json" for c in range(3)), "asm/other.json"}
    assert all(i["generation"] > 0 for i in manifest["inputs"])


def test_post_assemble_writes_a_dataset_in_the_output_bucket(gcs: Gcs, api: str) -> None:
    _, client = gcs
    for i in range(4):
        upload(client, f"asm-http/job-{i}.json", json.dumps(
            {**job(f"c{i}"), "reference_id": f"r{i}"}).encode())
        response = requests.post(f"{api}/process", json={"bucket": IN, "name": f"asm-http/job-{i}.json"},
                                 timeout=120)
        assert response.json()["status"] == "converted"
    response = requests.post(f"{api}/assemble", json={
        "prefix": "asm-http/", "name": "cars-v1", "splits": {"all": 1}}, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["splits"]["all"]["images"] == 4 and answer["dataset"].endswith("datasets/cars-v1/")
    found = outputs(client, "datasets/cars-v1/")
    coco = load_coco(found["datasets/cars-v1/annotations/instances_all.json"])
    assert len(coco.dataset["images"]) == 4 and len(coco.dataset["annotations"]) == 8
    assert "datasets/cars-v1/dataset.json" in found
    for bad in ({"prefix": "asm-http/", "name": "../x"}, {"prefix": "asm-http/", "name": "ok",
                                                          "splits": {"a": 0.5}}):
        assert requests.post(f"{api}/assemble", json=bad, timeout=60).status_code == 400
