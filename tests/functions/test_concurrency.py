"""Concurrent deliveries against a fresh emulator and function process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.functions.conftest import IN, OUT, Gcs, Trigger, job, outputs, upload
from tests.functions.harness import function_env, function_server, post_event

pytestmark = pytest.mark.xdist_group("functions-concurrency")


@pytest.fixture(scope="module")
def trigger(gcs: Gcs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trigger]:
    # The emulator answers 20 concurrent writers slowly: the production retry budget (60 s)
    # rather than the short one the fault tests use.
    env = function_env(gcs[0], IN, OUT)
    log = tmp_path_factory.mktemp("logs") / "on_upload.log"
    with function_server("on_upload", "cloudevent", env, log=log) as url:
        yield url, log


def test_concurrent_new_labels_each_registered_once(gcs: Gcs, trigger: Trigger) -> None:
    _, client = gcs
    events = [upload(client, f"labels/{i}.json", json.dumps(job(label=f"new-{i}")).encode())
              for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda d: post_event(trigger[0], d).status_code, events))
    assert codes == [200] * 20
    registry = json.loads(client.bucket(OUT).blob("_registry/categories.json")
                          .download_as_bytes())
    names = [c["name"] for c in registry["categories"]]
    assert len(names) == len(set(names))
    assert {f"new-{i}" for i in range(20)} <= set(names)
    ids = [c["id"] for c in registry["categories"]]
    assert sorted(ids) == list(range(1, len(ids) + 1))
    for i in range(20):
        coco = json.loads(outputs(client, f"labels/{i}.json@/")[f"labels/{i}.json@/coco.json"])
        by_name = {c["name"]: c["id"] for c in registry["categories"]}
        assert {c["name"]: c["id"] for c in coco["categories"]} == {
            f"new-{i}": by_name[f"new-{i}"], "road": by_name["road"]}
