"""SPEC §6 classification, through the real trigger and the real HTTP function: every cause
an input can bring is an `error.json` + 200 in the trigger and a 4xx JSON error over HTTP;
only faults of the platform or the deployment answer 5xx (and are retried)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

from tests.functions.conftest import IN, OUT, Gcs, Trigger, job, outputs, upload
from tests.functions.harness import (
    PROCESSES,
    FaultProxy,
    function_env,
    function_server,
    post_event,
    tree_peak_rss_kib,
)
from tests.masks import encode_png

pytestmark = pytest.mark.xdist_group("functions-poison")
DENIED = "gtcoco-test-denied"  # in the gs:// allow-list, but storage answers 403
LIMIT = 1 << 20


@pytest.fixture(scope="module")
def trigger(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trigger]:
    env = function_env(proxy.url, IN, OUT, GTCOCO_STORAGE_RETRY_DEADLINE_S="5",
                       GTCOCO_FETCH_ALLOW_HOSTS=f"gs://{DENIED}")
    log = tmp_path_factory.mktemp("logs") / "on_upload.log"
    with function_server("on_upload", "cloudevent", env, log=log) as url:
        yield url, log


@pytest.fixture(scope="module")
def api(proxy: FaultProxy) -> Iterator[str]:
    env = function_env(proxy.url, IN, OUT, GTCOCO_MAX_JSON_BYTES=str(LIMIT),
                       GTCOCO_STORAGE_RETRY_DEADLINE_S="5",
                       GTCOCO_FETCH_ALLOW_HOSTS=f"gs://{DENIED}")
    with function_server("api", "http", env) as url:
        yield url


def test_a_huge_chunked_body_is_refused_without_being_read(api: str) -> None:
    """200 MiB without a Content-Length against a 1 MiB limit: the worker's peak memory
    must not grow by anything near the body's size."""
    process = PROCESSES[api]
    requests.post(f"{api}/convert", json=job(), timeout=60)  # warm the worker up
    before = tree_peak_rss_kib(process.pid)

    def body() -> Iterator[bytes]:
        yield b'{"image_url": "'
        for _ in range(200 * 16):
            yield b"a" * 65536
        yield b'"}'

    try:
        response = requests.post(f"{api}/convert", data=body(), timeout=120,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
    except requests.ConnectionError:
        pass  # the function closed the connection after answering 413 mid-upload
    grown_mib = (tree_peak_rss_kib(process.pid) - before) / 1024
    assert grown_mib < 32, f"peak memory grew by {grown_mib:.0f} MiB"


def _seg(url: str, **size: int) -> dict[str, Any]:
    return {"image_url": "https://cdn.example.com/s.jpg", **size,
            "maker_response": {"raster": {"data": {"url": url, "legend": {"#ff0000": "car"}}}}}


def _zigzag() -> dict[str, Any]:
    ring = {str(i): {"x": i / 3000, "y": float(i % 2)} for i in range(3000)}
    return {"image_url": "https://cdn.example.com/z.jpg", "width": 10**6, "height": 10**6,
            "maker_response": {"polygons": {"data": [{"_id": "z", "label": "zig",
                                                     "points": ring}]}}}


# cause -> the export's bytes, the error code, the HTTP status of POST /convert
CAUSES: list[tuple[str, bytes, str, int]] = [
    ("invalid JSON", b'{"image_url": ', "invalid_json", 400),
    ("an integer of 5000 digits", b'{"width": ' + b"9" * 5000 + b"}", "invalid_json", 400),
    ("a lone surrogate", b'{"image_url": "\\ud800", "width": 1, "height": 1}',
     "invalid_encoding", 400),
    ("nesting past the depth limit", b"[" * 200 + b"]" * 200, "json_too_deep", 400),
    ("not UTF-8", b'{"image_url": "\xff"}', "invalid_encoding", 400),
    ("no known shape", b'{"hello": 1}', "unknown_shape", 422),
    ("a non-public image URL", json.dumps(job(size=False) | {
        "image_url": "http://169.254.169.254/x.jpg"}).encode(), "image_size_unavailable", 422),
    ("a mask scaled past the pixel limit", json.dumps(_seg(
        f"gs://{IN}/poison/small.png", width=20000, height=20000)).encode(), "mask_too_large",
     413),
    ("a gs:// URL outside the allow-list", json.dumps(_seg("gs://someone-else/m.png")).encode(),
     "url_refused", 422),
    ("a gs:// bucket that answers 403", json.dumps(_seg(f"gs://{DENIED}/m.png")).encode(),
     "url_unreachable", 422),
    ("a missing gs:// object", json.dumps(_seg(f"gs://{IN}/poison/absent.png")).encode(),
     "url_unreachable", 422),
    ("a zig-zag polygon on a huge frame", json.dumps(_zigzag()).encode(), "shape_too_complex",
     413),
    ("a label over the length limit", json.dumps(job(label="x" * 300)).encode(),
     "label_too_long", 413),
]


@pytest.fixture(scope="module")
def small_mask(gcs: Gcs, proxy: FaultProxy) -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :] = (0, 0, 255, 255)
    upload(gcs[1], "poison/small.png", encode_png(rgba), "image/png")
    proxy.denied.append(f"/b/{DENIED}/")


@pytest.mark.parametrize(("cause", "body", "code", "status"), CAUSES, ids=[c[0] for c in CAUSES])
def test_each_cause_is_an_error_entry_in_the_trigger(
    gcs: Gcs, trigger: Trigger, small_mask: None, cause: str, body: bytes, code: str, status: int
) -> None:
    name = f"poison/{code}-{abs(hash(cause))}.json"
    response = post_event(trigger[0], upload(gcs[1], name, body))
    assert response.status_code == 200, response.text
    got = outputs(gcs[1], name + "@/")
    assert sorted(got) == [name + "@/error.json"]
    assert json.loads(got[name + "@/error.json"])["error"]["code"] == code


@pytest.mark.parametrize(("cause", "body", "code", "status"), CAUSES, ids=[c[0] for c in CAUSES])
def test_each_cause_is_a_4xx_json_error_over_http(
    api: str, small_mask: None, cause: str, body: bytes, code: str, status: int
) -> None:
    response = requests.post(f"{api}/convert", data=body, timeout=60,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


MALFORMED: list[tuple[str, Any]] = [
    ("a string", "labels/a.json"),
    ("a list", [IN, "labels/a.json"]),
    ("no name", {"bucket": IN}),
    ("a number as name", {"bucket": IN, "name": 7}),
    ("a letter generation", {"bucket": IN, "name": "a.json", "generation": "abc"}),
    ("an absurd generation", {"bucket": IN, "name": "a.json", "generation": "9" * 40}),
    ("a float generation", {"bucket": IN, "name": "a.json", "generation": 1.5}),
    ("a negative size", {"bucket": IN, "name": "a.json", "generation": "1", "size": "-4"}),
    ("a dict generation", {"bucket": IN, "name": "a.json", "generation": {"x": 1}}),
    ("an int generation past int64", {"bucket": IN, "name": "a.json", "generation": 2**70}),
    ("a negative int generation", {"bucket": IN, "name": "a.json", "generation": -5}),
]


@pytest.mark.parametrize(("what", "data"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_event_data_is_skipped_not_retried(
    trigger: Trigger, what: str, data: Any
) -> None:
    event_id = f"malformed-{abs(hash(what))}"
    response = post_event(trigger[0], data, subject=(IN, "labels/a.json"), event_id=event_id)
    assert response.status_code == 200, response.text
    lines = [json.loads(x) for x in trigger[1].read_text().splitlines() if x.startswith("{")]
    (entry,) = [e for e in lines if e.get("event_id") == event_id]
    assert entry["outcome"] == "skipped" and "malformed event" in entry["message"]


def test_a_name_too_long_for_its_outputs_is_an_error_entry(gcs: Gcs, trigger: Trigger) -> None:
    name = "poison/" + "/".join(["n" * 200] * 5) + ".json"  # 1017 bytes: storage takes it
    response = post_event(trigger[0], upload(gcs[1], name, json.dumps(job()).encode()))
    assert response.status_code == 200
    (error,) = [b for b in gcs[1].list_blobs(OUT, prefix="~long/")]
    assert json.loads(error.download_as_bytes())["error"]["code"] == "name_too_long"


def test_our_own_bucket_refusing_us_is_a_retried_configuration_fault(
    gcs: Gcs, trigger: Trigger, proxy: FaultProxy
) -> None:
    """A 403 on the output bucket is the deployment's fault (a missing role): 500, so the
    platform retries it once the role is granted; never an error entry blaming the input."""
    data = upload(gcs[1], "cfg/denied.json", json.dumps(job()).encode())
    proxy.denied.append("cfg%2Fdenied.json%40")
    try:
        response = post_event(trigger[0], data)
    finally:
        proxy.denied.remove("cfg%2Fdenied.json%40")
    assert response.status_code == 500
    assert post_event(trigger[0], data).status_code == 200
    assert "cfg/denied.json@/coco.json" in outputs(gcs[1], "cfg/")


def test_process_names_what_is_wrong_with_a_request(gcs: Gcs, api: str) -> None:
    def post(body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{api}/process", json=body, timeout=60)

    assert post({"bucket": IN, "name": "absent.json"}).status_code == 404
    bad_generation = post({"bucket": IN, "name": "absent.json", "generation": "x"})
    assert bad_generation.status_code in {400, 404}
    upload(gcs[1], "proc/a.json", json.dumps(job()).encode())
    wrong = post({"bucket": IN, "name": "proc/a.json", "generation": "not-a-number"})
    assert wrong.status_code == 400 and wrong.json()["error"]["pointer"] == "/generation"
    assert post({"bucket": IN, "name": ["x"]}).status_code == 400
    stale = post({"bucket": IN, "name": "proc/a.json", "generation": "1"})
    assert stale.status_code == 200 and stale.json()["status"] == "skipped"


def test_read_retries_end_at_the_configured_deadline(
    gcs: Gcs, trigger: Trigger, proxy: FaultProxy
) -> None:
    """Reads of the input answering 503: the function gives up within its 5 s budget and
    answers 500 (the platform retries), instead of the client's default 120 s per read.
    The 60 s wait stands for the platform's own request timeout, which would otherwise kill
    the instance mid-retry."""
    data = upload(gcs[1], "slow/read.json", json.dumps(job()).encode())
    proxy.unavailable.append("slow%2Fread.json")
    try:
        response = post_event(trigger[0], data, timeout=60)
    finally:
        proxy.unavailable.remove("slow%2Fread.json")
    assert response.status_code == 500
    assert post_event(trigger[0], data).status_code == 200


def test_an_event_naming_another_bucket_converts_nothing(gcs: Gcs, trigger: Trigger) -> None:
    """The object exists in the input bucket under that name; the event claims another
    bucket: it is skipped, never read from the input bucket instead."""
    data = upload(gcs[1], "elsewhere/x.json", json.dumps(job()).encode())
    for bucket in ("someone-elses-bucket", OUT):
        response = post_event(trigger[0], data | {"bucket": bucket})
        assert response.status_code == 200
    assert outputs(gcs[1], "elsewhere/") == {}
