"""Fixtures and helpers of the integration tests: each test module gets its own emulator
and function processes (module scope), so a heavy module cannot disturb another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage

from tests.functions.harness import (
    FaultProxy,
    function_env,
    function_server,
    object_data,
    storage_emulator,
)

IN, OUT = "gtcoco-test-in", "gtcoco-test-out"
Gcs = tuple[str, storage.Client]  # emulator URL, client
Trigger = tuple[str, Path]  # function URL, its log file


def job(label: str = "car", size: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"image_url": "https://cdn.example.com/a.jpg", "reference_id": f"ref-{label}",
           "maker_response": {"rectangles": {"data": [{"_id": "r1", "label": label,
                                                        "coordinates": [{"x": .1, "y": .1},
                                                                        {"x": .5, "y": .6}]}]},
                              "polygons": {"data": [{"_id": "p1", "label": "road", "points": {
                                  "p1": {"x": 0, "y": 1}, "p2": {"x": 1, "y": 1},
                                  "p3": {"x": .5, "y": .5}}}]}}}
    if size:
        doc |= {"width": 640, "height": 480}
    return doc


@pytest.fixture(scope="module")
def gcs() -> Iterator[Gcs]:
    with storage_emulator(IN, OUT) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def proxy(gcs: Gcs) -> Iterator[FaultProxy]:
    fault = FaultProxy(gcs[0])
    yield fault
    fault.close()


@pytest.fixture(scope="module")
def trigger(
    proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trigger]:
    env = function_env(proxy.url, IN, OUT, GTCOCO_STORAGE_RETRY_DEADLINE_S="5")
    log = tmp_path_factory.mktemp("logs") / "on_upload.log"
    with function_server("on_upload", "cloudevent", env, log=log) as url:
        yield url, log


@pytest.fixture(scope="module")
def api(proxy: FaultProxy) -> Iterator[str]:
    env = function_env(proxy.url, IN, OUT, GTCOCO_MAX_JSON_BYTES=str(1 << 20))
    with function_server("api", "http", env) as url:
        yield url


def upload(
    client: storage.Client, name: str, data: bytes, content_type: str = "application/json"
) -> dict[str, Any]:
    blob = client.bucket(IN).blob(name)
    blob.upload_from_string(data, content_type=content_type)
    return object_data(IN, name, blob.generation, len(data))


def outputs(client: storage.Client, prefix: str) -> dict[str, bytes]:
    return {b.name: b.download_as_bytes() for b in client.list_blobs(OUT, prefix=prefix)}


def generations(client: storage.Client, prefix: str) -> dict[str, int]:
    return {b.name: b.generation for b in client.list_blobs(OUT, prefix=prefix)}
