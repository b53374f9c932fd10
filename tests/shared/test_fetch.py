"""SPEC §7: the fetcher never sends a request to a non-public address, redirects included."""

from __future__ import annotations

import io
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.errors import ConversionError, TooLargeError, TransientError
from shared.fetch import Fetcher, FetchPolicy, Resolver, UrlReader
from shared.imagesize import size_from_chunks
from tests.httpserver import CountingServer

LOOPBACK_ONLY = (ipaddress.ip_network("127.0.0.1/32"),)
HTTP = frozenset({"http", "https"})


def resolver_to(address: str) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        return [address]

    return resolve


@pytest.fixture
def victim() -> Iterator[CountingServer]:
    """A server standing where a refused request would land: it must see no hit."""
    with CountingServer("127.0.0.1", {"/": (200, {}, b"secret")}) as server:
        yield server


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/computeMetadata/v1/",
    "http://127.0.0.1:{port}/",
    "http://10.0.0.1/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://100.64.0.1/",
    "https://metadata.google.internal/",
    "ftp://example.com/x",
    "file:///etc/passwd",
    "http://user:pw@example.com/",
])
def test_non_public_targets_are_refused_without_a_request(victim: CountingServer, url: str) -> None:
    # Even with http allowed and the name resolving to loopback, nothing is sent.
    fetcher = Fetcher(FetchPolicy(schemes=HTTP), resolver_to("127.0.0.1"))
    with pytest.raises(ConversionError) as info:
        b"".join(fetcher.chunks(url.format(port=victim.port)))
    assert info.value.code == "url_refused"
    assert victim.hits == []


def test_default_policy_refuses_plain_http(victim: CountingServer) -> None:
    with pytest.raises(ConversionError, match="scheme 'http'"):
        next(Fetcher(FetchPolicy()).chunks(victim.url()))
    assert victim.hits == []


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.1",
                                     "fd00::1", "172.16.5.4"])
def test_public_name_resolving_to_private_address_is_refused(victim: CountingServer, address: str) -> None:
    fetcher = Fetcher(FetchPolicy(schemes=HTTP), resolver_to(address))
    with pytest.raises(ConversionError, match="non-public address"):
        next(fetcher.chunks(f"http://images.example.com:{victim.port}/"))
    assert victim.hits == []


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/", "http://169.254.169.254/",
                                    "http://10.0.0.1/", "http://rebind.example:{port}/"])
def test_redirects_to_non_public_targets_are_refused(target: str) -> None:
    with CountingServer("127.0.0.2", {"/": (200, {}, b"secret")}) as hidden:
        location = target.format(port=hidden.port)
        with CountingServer("127.0.0.1", {"/img": (302, {"Location": location}, b"")}) as front:
            def resolve(host: str, port: int) -> list[str]:
                return ["127.0.0.2"]  # a public-looking name pointing inside

            fetcher = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY), resolve)
            with pytest.raises(ConversionError) as info:
                b"".join(fetcher.chunks(front.url("/img")))
            assert info.value.code == "url_refused"
            assert front.hits == ["/img"]
            assert hidden.hits == []


def test_allowed_redirect_is_followed_and_size_is_capped() -> None:
    with CountingServer(routes={"/a": (301, {"Location": "/b"}, b""),
                                "/b": (200, {}, b"x" * 5000)}) as server:
        policy = FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY, max_bytes=10_000)
        assert b"".join(Fetcher(policy).chunks(server.url("/a"))) == b"x" * 5000
        small = FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY, max_bytes=1000)
        with pytest.raises(TooLargeError):
            b"".join(Fetcher(small).chunks(server.url("/b"), chunk_size=512))


def test_allow_list_narrows_hosts(victim: CountingServer) -> None:
    policy = FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY,
                         allow_hosts=("cdn.example.com", "gs://only-bucket"))
    with pytest.raises(ConversionError, match="allow-list"):
        next(Fetcher(policy).chunks(victim.url()))
    reader = UrlReader(Fetcher(policy), open_bucket=lambda b: pytest.fail("opened " + b))
    with pytest.raises(ConversionError, match="allow-list"):
        next(reader.chunks("gs://other-bucket/x.png"))
    assert victim.hits == []


def test_status_codes_map_to_failure_kinds() -> None:
    with CountingServer(routes={"/busy": (503, {}, b""), "/slow-down": (429, {}, b""),
                                "/gone": (404, {}, b"")}) as server:
        fetcher = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY))
        for path in ("/busy", "/slow-down"):
            with pytest.raises(TransientError):
                next(fetcher.chunks(server.url(path)))
        with pytest.raises(ConversionError) as info:
            next(fetcher.chunks(server.url("/gone")))
        assert info.value.code == "url_unreachable"


def test_slow_server_times_out_as_transient() -> None:
    def slow() -> tuple[int, dict[str, str], bytes]:
        time.sleep(2)
        return 200, {}, b"late"

    with CountingServer(routes={"/slow": slow}) as server:
        fetcher = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY,
                                      timeout_s=0.5))
        with pytest.raises(TransientError):
            b"".join(fetcher.chunks(server.url("/slow")))


def test_local_files_only_from_the_command_line(tmp_path: Path) -> None:
    reader = UrlReader(Fetcher(FetchPolicy()))
    with pytest.raises(ConversionError, match="command line"):
        next(reader.chunks(str(tmp_path / "a.png")))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_image_size_reads_only_the_header(fmt: str) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)  # 12 MP
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({"exif": b"Exif\x00\x00" + b"\x00" * 30000}
                                                   if fmt == "JPEG" else {"compress_level": 1}))
    body = buffer.getvalue()
    with CountingServer(routes={"/img": (200, {}, body)}) as server:
        fetcher = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY))
        width, height, consumed = size_from_chunks(fetcher.chunks(server.url("/img"),
                                                                  chunk_size=4096), 4 << 20)
    assert (width, height) == (4000, 3000)
    assert consumed <= 64 * 1024 < len(body) // 100
