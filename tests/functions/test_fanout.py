"""A 2,000-job batch fanned out on Cloud Tasks, with real parts: its finalized event reaches
the `on_upload` function, which enqueues 8 shard tasks on gcloud-tasks-emulator; the
emulator posts each to the `api` function's POST /shard; both run against fake-gcs-server
behind a proxy that makes one job's upload fail mid-shard.  The shard is retried alone and
the outputs equal, byte for byte, those of the same batch converted in one run."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from google.cloud import storage

from tests.functions.conftest import IN, OUT, Gcs, job, upload
from tests.functions.harness import (
    FaultProxy,
    free_port,
    function_env,
    function_server,
    post_event,
    tasks_emulator,
)

pytestmark = pytest.mark.xdist_group("functions-fanout")

QUEUE = "projects/test-project/locations/us-central1/queues/fanout"
SINGLE = "gtcoco-test-single"  # the one-run conversion's output bucket
JOBS, SHARD_JOBS = 2000, 250
ASSEMBLE_SHARD_JOBS = 25
NAME = "big/batch.json"
PREFIX = "big/batch.json@/"
FAILING = f"{PREFIX}jobs/ref-1100/coco.json"  # in shard 4 (jobs 1000-1249)


def big_batch() -> bytes:
    return json.dumps([
        {"image_url": f"https://cdn.example.com/{i}.jpg", "reference_id": f"ref-{i}",
         "width": 640, "height": 480,
         "maker_response": {"rectangles": {"data": [
             {"_id": "r", "label": f"c{i % 7}",
              "coordinates": [{"x": .1, "y": .1}, {"x": .5, "y": .6}]}]}}}
        for i in range(JOBS)]).encode()


def files(client: storage.Client, bucket: str, prefix: str = PREFIX) -> dict[str, bytes]:
    return {b.name: b.download_as_bytes() for b in client.list_blobs(bucket, prefix=prefix)}


@dataclass(frozen=True)
class FanOut:
    trigger: str
    api: str
    proxy: FaultProxy
    log: Path  # the api's


@pytest.fixture(scope="module")
def fan_out(gcs: Gcs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FanOut]:
    """The trigger and the api with a queue between them, through the fault proxy."""
    proxy = FaultProxy(gcs[0])
    port, grpc_port = free_port(), free_port()
    env = function_env(proxy.url, IN, OUT, GTCOCO_TASKS_QUEUE=QUEUE,
                       GTCOCO_TASKS_URL=f"http://127.0.0.1:{port}",
                       GTCOCO_TASKS_SERVICE_ACCOUNT="tasks@test-project.iam.gserviceaccount.com",
                       CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{grpc_port}",
                       GTCOCO_SHARD_JOBS=str(SHARD_JOBS), GTCOCO_STORAGE_RETRY_DEADLINE_S="2",
                       GTCOCO_ASSEMBLE_SHARD_JOBS=str(ASSEMBLE_SHARD_JOBS))
    log = tmp_path_factory.mktemp("logs") / "api.log"
    with tasks_emulator(QUEUE, port, grpc_port, max_retries=5), \
            function_server("api", "http", env, port=port, log=log) as api, \
            function_server("on_upload", "cloudevent", env) as trigger:
        yield FanOut(trigger, api, proxy, log)
    proxy.close()


def wait_until(predicate: object, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise TimeoutError(what)


def test_a_big_batch_fans_out_converts_once_and_a_failed_shard_is_retried_alone(
    gcs: Gcs, fan_out: FanOut
) -> None:
    _, client = gcs
    trigger, proxy, log = fan_out.trigger, fan_out.proxy, fan_out.log
    proxy.fail_uploads(FAILING, 10_000)  # until the shard's first attempt has failed
    event = upload(client, NAME, big_batch())
    response = post_event(trigger, event)
    assert response.status_code == 200, response.text
    plan = json.loads(client.bucket(OUT).blob(f"{PREFIX}fanout.json").download_as_bytes())
    assert (plan["jobs"], plan["shards"]) == (JOBS, JOBS // SHARD_JOBS)

    def shard_failed() -> bool:
        return "failure answering /shard" in log.read_text(errors="replace")

    wait_until(shard_failed, "the shard with the failing upload never failed")
    proxy.fail_uploads("", 0)
    report_blob = client.bucket(OUT).blob(f"{PREFIX}report.json")
    wait_until(report_blob.exists, "the batch report was never written")
    # The completing shard removes the records and the plan after the report, then
    # releases the input's lease.
    wait_until(lambda: not any(n.endswith(("fanout.json", ".lock", "lock.json")) or "/shards/" in n
                               for n in (b.name for b in client.list_blobs(OUT, prefix=PREFIX))),
               "the records, the plan or a lease stayed")
    report = json.loads(report_blob.download_as_bytes())
    assert report["status"] == "converted" and len(report["jobs"]) == JOBS
    assert [j["key"] for j in report["jobs"]] == [f"big/batch/ref-{i}" for i in range(JOBS)]

    # Once: every file but the failed shard's was uploaded once; that shard's jobs before
    # the failing one twice (the retry), the report once; no record or plan is left.
    uploads = Counter(name for kind, name in proxy.writes if kind == "upload")
    assert uploads[f"{PREFIX}report.json"] == 1
    twice = {n for n, c in uploads.items() if c > 1 and "/jobs/" in n}
    assert twice and all(1000 <= int(n.split("/jobs/ref-")[1].split("/")[0]) < 1250
                         for n in twice), sorted(twice)[:5]
    assert uploads[FAILING] == proxy.injected + 1  # the proxy counts the 503s it answered
    assert all(uploads[f"{PREFIX}jobs/ref-{i}/coco.json"] == 1 for i in range(1000))
    fanned = files(client, OUT)
    assert not any("/shards/" in n or n.endswith("fanout.json") for n in fanned)
    assert len(fanned) == 2 * JOBS + 1

    # The same batch in one run (no queue), with the registry the fan-out left, so the
    # category ids are the same: every byte equal.
    client.create_bucket(SINGLE)
    registry = client.bucket(OUT).blob("_registry/categories.json").download_as_bytes()
    client.bucket(SINGLE).blob("_registry/categories.json").upload_from_string(registry)
    env = function_env(gcs[0], IN, SINGLE)
    with function_server("api", "http", env) as api:
        answer = requests.post(f"{api}/process", json={"bucket": IN, "name": NAME}, timeout=300)
        assert answer.status_code == 200 and answer.json()["status"] == "converted", answer.text
    assert files(client, SINGLE) == fanned


def test_a_sharded_assembly_on_the_queue_equals_the_single_run_byte_for_byte(
    gcs: Gcs, fan_out: FanOut
) -> None:
    _, client = gcs
    exports = 60  # 3 map tasks of 25, 25 and 10 jobs, then the reduce
    env = function_env(gcs[0], IN, OUT)
    request = {"prefix": "ds/", "name": "ds", "splits": {"train": 0.7, "val": 0.3}}
    with function_server("api", "http", env) as single:
        for i in range(exports):
            upload(client, f"ds/job-{i:02d}.json", json.dumps(job(f"c{i % 4}")).encode())
            answer = requests.post(f"{single}/process", json={"bucket": IN, "name": f"ds/job-{i:02d}.json"},
                                   timeout=60)
            assert answer.json()["status"] == "converted", answer.text
        one_run = requests.post(f"{single}/assemble", json=request, timeout=300)
        assert one_run.status_code == 200, one_run.text
    expected = files(client, OUT, "datasets/ds/")
    assert "datasets/ds/dataset.json" in expected
    for name in expected:
        client.bucket(OUT).blob(name).delete()

    sharded = requests.post(f"{fan_out.api}/assemble", json=request, timeout=300)
    assert sharded.status_code == 202, sharded.text
    assert (sharded.json()["shards"], sharded.json()["jobs"]) == (3, exports)
    dataset = client.bucket(OUT).blob("datasets/ds/dataset.json")
    wait_until(dataset.exists, "the reduce never wrote dataset.json")
    # Written after dataset.json: the plan and parts are removed, once the reduce is done.
    wait_until(lambda: not list(client.list_blobs(OUT, prefix="datasets/ds/_parts/")),
               "the parts stayed")
    got = files(client, OUT, "datasets/ds/")
    assert sorted(got) == sorted(expected)  # no part or plan is left behind
    assert got == expected
