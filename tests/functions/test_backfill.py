"""Backfills with real parts: POST /backfill on a functions-framework process enqueues on
gcloud-tasks-emulator, which calls the same process's POST /process, against
fake-gcs-server; and `gtcoco backfill --local`, killed half-way and run again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from google.cloud import storage

from tests.functions.conftest import IN, OUT, Gcs, job, outputs, upload
from tests.functions.harness import free_port, function_env, function_server, tasks_emulator

pytestmark = pytest.mark.xdist_group("functions-backfill")

QUEUE = "projects/test-project/locations/us-central1/queues/backfill"
EXPORTS = 30


@pytest.fixture(scope="module")
def api_with_queue(gcs: Gcs) -> Iterator[str]:
    port, grpc_port = free_port(), free_port()
    env = function_env(gcs[0], IN, OUT, GTCOCO_TASKS_QUEUE=QUEUE,
                       GTCOCO_TASKS_URL=f"http://127.0.0.1:{port}",
                       GTCOCO_TASKS_SERVICE_ACCOUNT="tasks@test-project.iam.gserviceaccount.com",
                       CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{grpc_port}")
    with tasks_emulator(QUEUE, port, grpc_port), function_server("api", "http", env, port=port) as url:
        yield url


def markers(client: storage.Client, prefix: str) -> dict[str, int]:
    """Each input's report or error under `prefix` -> its object generation."""
    return {b.name: int(b.generation) for b in client.list_blobs(OUT, prefix=prefix)
            if b.name.endswith(("@/report.json", "@/error.json"))}


def wait_for(predicate: object, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise TimeoutError("the tasks did not finish")


def test_post_backfill_converts_every_export_once_and_twice_is_once(
    gcs: Gcs, api_with_queue: str
) -> None:
    _, client = gcs
    for i in range(EXPORTS):
        upload(client, f"bf/job-{i:02d}.json", json.dumps(job(f"c{i % 3}")).encode())
    upload(client, "bf/broken.json", b'{"image_url": ')  # poison: an error.json, no retry
    upload(client, "bf/notes.txt", b"not an export", "text/plain")
    response = requests.post(f"{api_with_queue}/backfill", json={"prefix": "bf/"}, timeout=120)
    assert response.status_code == 200, response.text
    first = response.json()
    assert first["enqueued"] == EXPORTS + 1 and first["not_exports"] == 1
    wait_for(lambda: len(markers(client, "bf/")) == EXPORTS + 1)
    done = markers(client, "bf/")
    assert sum(n.endswith("error.json") for n in done) == 1
    converted = outputs(client, "bf/job-07.json@/")
    assert json.loads(converted["bf/job-07.json@/report.json"])["status"] == "converted"
    # Again: everything is current; nothing is enqueued, and no output is written again.
    time.sleep(1)
    again = requests.post(f"{api_with_queue}/backfill", json={"prefix": "bf/"}, timeout=120)
    assert again.json()["enqueued"] == 0 and again.json()["current"] == EXPORTS + 1
    time.sleep(2)
    assert markers(client, "bf/") == done
    # A new generation of one export: only it is enqueued.
    upload(client, "bf/job-03.json", json.dumps(job("changed")).encode())
    third = requests.post(f"{api_with_queue}/backfill", json={"prefix": "bf/"}, timeout=120)
    assert third.json()["enqueued"] == 1
    wait_for(lambda: markers(client, "bf/")["bf/job-03.json@/report.json"]
             != done["bf/job-03.json@/report.json"])


def test_local_backfill_killed_half_way_finishes_on_the_next_run(gcs: Gcs, tmp_path: object) -> None:
    _, client = gcs
    for i in range(12):
        upload(client, f"local/job-{i:02d}.json", json.dumps(job()).encode())
    env = function_env(gcs[0], IN, OUT)
    argv = [sys.executable, "-m", "shared.app.cli", "backfill", f"gs://{IN}/local/",
            "--out", f"gs://{OUT}", "--local", "--workers", "2"]
    # "Killed" after 5: a run that stops at its limit leaves the rest to the next run.
    first = subprocess.run([*argv, "--limit", "5"], capture_output=True, text=True, env=env,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert "5 converted" in first.stdout and "7 left for the next run" in first.stdout
    assert len(markers(client, "local/")) == 5
    before = markers(client, "local/")
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert "5 already converted" in second.stdout and "7 converted" in second.stdout
    after = markers(client, "local/")
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())
    third = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert "12 already converted" in third.stdout and markers(client, "local/") == after
