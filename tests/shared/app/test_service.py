"""The service layer's own checks, without a web framework in front of it."""

from __future__ import annotations

import pytest

from shared.app.runtime import build_pipeline
from shared.app.service import Service
from shared.config import Config, Limits
from shared.io.storage import MemoryStore


@pytest.fixture
def service() -> Service:
    config = Config(input_bucket="in", output_bucket="out", limits=Limits(max_json_bytes=100))
    source, out = MemoryStore("in"), MemoryStore("out")
    return Service(config, source, out, build_pipeline(config, source, out, open_bucket=False))


@pytest.mark.parametrize("body", [None, b"{" + b" " * 200 + b"}"], ids=["abandoned", "over"])
def test_a_body_over_the_limit_is_413_whoever_read_it(service: Service, body: bytes | None
                                                      ) -> None:
    status, answer = service.handle_http("POST", "/convert", "application/json", body)
    assert status == 413 and answer["error"]["code"] == "body_too_large"
