"""SPEC §7: the fetcher never sends a request to a non-public address, redirects included."""

from __future__ import annotations

import io
import ipaddress
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import trustme
from PIL import Image

from shared.errors import ConversionError, TooLargeError, TransientError
from shared.io.fetch import Fetcher, FetchPolicy, Resolver, UrlReader, embedded_ipv4
from shared.raster.imagesize import size_from_chunks
from tests.httpserver import Answer, CountingServer, Drip

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


def test_plain_http_is_allowed_unless_https_only_is_set() -> None:
    from shared.app.runtime import fetch_policy
    from shared.config import Config

    with CountingServer(routes={"/f": (200, {}, b"frame")}) as server:
        url = server.url("/f", host="cdn.example.com")
        default = fetch_policy(Config(), trusted_networks=LOOPBACK_ONLY)
        assert b"".join(Fetcher(default, resolver_to("127.0.0.1")).chunks(url)) == b"frame"
        strict = fetch_policy(Config.from_env({"GTCOCO_FETCH_HTTPS_ONLY": "true"}),
                              trusted_networks=LOOPBACK_ONLY)
        with pytest.raises(ConversionError, match="scheme 'http'") as info:
            next(Fetcher(strict, resolver_to("127.0.0.1")).chunks(url))
        assert info.value.code == "url_refused"
        assert server.hits == ["/f"]


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


# IPv6 forms that carry a non-public IPv4 address, or are non-public themselves: Python's
# `is_global` calls most of them global.
EMBEDDED = [
    "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix -> 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 -> 127.0.0.1
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix (RFC 8215)
    "2002:a9fe:a9fe::1",  # 6to4 -> 169.254.169.254
    "2002:7f00:1::1",  # 6to4 -> 127.0.0.1
    "::a00:1",  # IPv4-compatible ::10.0.0.1
    "::ffff:0:a9fe:a9fe",  # IPv4-translated ::ffff:0:169.254.169.254
    "::ffff:a9fe:a9fe",  # IPv4-mapped
    "fec0::1",  # site-local
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "ff0e::1",  # global-scope multicast
    "224.0.1.1",  # IPv4 multicast
]


@pytest.mark.parametrize("address", EMBEDDED)
def test_ipv6_forms_embedding_non_public_addresses_are_refused(
    victim: CountingServer, address: str
) -> None:
    fetcher = Fetcher(FetchPolicy(schemes=HTTP), resolver_to(address))
    with pytest.raises(ConversionError, match="non-public address") as info:
        next(fetcher.chunks(f"https://images.example.com:{victim.port}/"))
    assert info.value.code == "url_refused"
    assert victim.hits == []


@pytest.mark.parametrize("address", [a for a in EMBEDDED if "7f00" not in a])
def test_ipv6_embedded_forms_are_refused_after_a_redirect(address: str) -> None:
    with CountingServer("127.0.0.1", {"/img": (302, {"Location": "http://evil.example/x"},
                                               b"")}) as front:
        def resolve(host: str, port: int) -> list[str]:
            return [address]

        # (Loopback is trusted here for the front server, so the forms that embed loopback
        # are left to the test above.)
        fetcher = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY), resolve)
        with pytest.raises(ConversionError, match="non-public address"):
            b"".join(fetcher.chunks(front.url("/img")))
        assert front.hits == ["/img"]


@pytest.mark.parametrize("address", ["2001:4860:4860::8888", "64:ff9b::808:808",
                                     "2002:808:808::1", "::ffff:8.8.8.8", "8.8.8.8"])
def test_public_addresses_and_forms_embedding_them_pass(address: str) -> None:
    assert FetchPolicy().address_allowed(ipaddress.ip_address(address))


def test_a_dripping_server_cannot_stretch_the_fetch_deadline() -> None:
    """Each byte comes well within the socket timeout; only a wall-clock cap stops it."""
    with CountingServer(routes={"/drip": Drip(size=60, interval=0.05)}) as server:
        fetcher = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY,
                                      timeout_s=0.5))
        with pytest.raises(TransientError, match="took over"):
            b"".join(fetcher.chunks(server.url("/drip"), chunk_size=1))
        assert server.bytes_sent < 60


def test_redirects_are_capped() -> None:
    routes: dict[str, Answer | Callable[[], Answer] | Drip] = {
        f"/{i}": (302, {"Location": f"/{i + 1}"}, b"") for i in range(5)}
    routes["/5"] = (200, {}, b"end")
    with CountingServer(routes=routes) as server:
        capped = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY,
                                     max_redirects=3))
        with pytest.raises(ConversionError, match="more than 3 redirects"):
            b"".join(capped.chunks(server.url("/0")))
        assert server.hits == ["/0", "/1", "/2", "/3"]
        wide = Fetcher(FetchPolicy(schemes=HTTP, trusted_networks=LOOPBACK_ONLY,
                                   max_redirects=5))
        assert b"".join(wide.chunks(server.url("/0"))) == b"end"


@pytest.mark.parametrize(("host", "allowed"), [
    ("a.example.com", True), ("deep.a.example.com", True), ("cdn.other.org", True),
    ("evilexample.com", False), ("example.com.evil.net", False), ("other.org", False),
    ("A.EXAMPLE.COM.", True),
])
def test_suffix_allow_list_matches_whole_labels(host: str, allowed: bool) -> None:
    policy = FetchPolicy(allow_hosts=(".example.com", "cdn.other.org"))
    assert policy.host_allowed(host) is allowed


def test_gs_urls_name_only_allowed_buckets() -> None:
    from shared.app.runtime import fetch_policy
    from shared.config import Config
    from shared.io.storage import MemoryStore

    stores = {b: MemoryStore(b) for b in ("in", "shared-masks", "other")}
    for store in stores.values():
        store.write("m.png", b"\x89PNG", "image/png")
    opened: list[str] = []

    def open_bucket(bucket: str) -> MemoryStore:
        opened.append(bucket)
        return stores[bucket]

    config = Config(input_bucket="in", fetch_allow_hosts=("gs://shared-masks",))
    reader = UrlReader(Fetcher(fetch_policy(config)), open_bucket)
    assert reader.read_all("gs://in/m.png") == b"\x89PNG"
    assert reader.read_all("gs://shared-masks/m.png") == b"\x89PNG"
    with pytest.raises(ConversionError, match="not in the allow-list") as info:
        reader.read_all("gs://other/m.png")
    assert info.value.code == "url_refused"
    assert opened == ["in", "shared-masks"]
    default = UrlReader(Fetcher(fetch_policy(Config(input_bucket="in"))), open_bucket)
    with pytest.raises(ConversionError, match="not in the allow-list"):
        default.read_all("gs://shared-masks/m.png")
    with pytest.raises(ConversionError, match="no such object") as missing:
        default.read_all("gs://in/absent.png")
    assert missing.value.code == "url_unreachable"


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


def _tls_server(ca: trustme.CA, *names: str) -> CountingServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return CountingServer(routes={"/img": (200, {}, b"over tls")}, tls=context)


def _https_fetcher(ca_file: str | None) -> Fetcher:
    policy = FetchPolicy(trusted_networks=LOOPBACK_ONLY, ca_certs=ca_file)
    return Fetcher(policy, resolver_to("127.0.0.1"))


def test_https_verifies_the_certificate_and_its_name(tls_ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    with _tls_server(tls_ca, "images.example.com") as server:
        url = server.url("/img", host="images.example.com")
        assert b"".join(_https_fetcher(str(ca_file)).chunks(url)) == b"over tls"
        # The same server under another name: the certificate does not cover it.
        with pytest.raises(ConversionError, match="TLS failure") as wrong_name:
            b"".join(_https_fetcher(str(ca_file)).chunks(server.url("/img", host="other.example")))
        assert wrong_name.value.code == "url_unreachable"
        # Public CAs only (production): a certificate from an unknown CA is refused.
        with pytest.raises(ConversionError, match="TLS failure"):
            b"".join(_https_fetcher(None).chunks(url))
        assert server.hits == ["/img"]


@pytest.mark.parametrize(("address", "embedded"), [
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"), ("::a00:1", "10.0.0.1"),
    ("::ffff:a00:1", "10.0.0.1"), ("::ffff:0:a00:1", "10.0.0.1"), ("2002:a00:1::1", "10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo: the client, inverted
])
def test_every_embedded_ipv4_form_is_decoded(address: str, embedded: str) -> None:
    """Decoded even where Python's own tables already call the range non-global (Teredo,
    on this Python): the guard must not depend on them."""
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert ipaddress.IPv4Address(embedded) in found


def test_credentials_in_urls_are_refused_even_to_an_allowed_host(victim: CountingServer) -> None:
    fetcher = Fetcher(FetchPolicy(trusted_networks=LOOPBACK_ONLY), resolver_to("127.0.0.1"))
    url = f"http://user:secret@images.example.com:{victim.port}/"
    with pytest.raises(ConversionError, match="credentials") as info:
        next(fetcher.chunks(url))
    assert info.value.code == "url_refused"
    assert victim.hits == []
    assert b"".join(fetcher.chunks(url.replace("user:secret@", ""))) == b"secret"


# -- kept-alive connections -----------------------------------------------------------------

class _KeepAlive:
    """An HTTP/1.1 server that keeps connections open; counts the connections it accepted
    and the Host header of each request."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.connections = 0
        self.hosts: list[str] = []
        self.by_connection: dict[int, set[str]] = {}
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with outer.lock:
                    outer.connections += 1

            def do_GET(self) -> None:
                outer.hosts.append(self.headers["Host"])
                # One handler per connection: which hosts each connection served.
                outer.by_connection.setdefault(id(self), set()).add(self.headers["Host"])
                body = b"x" * 100 + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sequential_fetches_reuse_one_vetted_connection() -> None:
    server = _KeepAlive()
    try:
        fetcher = Fetcher(FetchPolicy(trusted_networks=LOOPBACK_ONLY), resolver_to("127.0.0.1"))
        bodies = [b"".join(fetcher.chunks(f"http://cdn.example.com:{server.port}/img/{i}.png"))
                  for i in range(20)]
        assert bodies == [b"x" * 100 + f"/img/{i}.png".encode() for i in range(20)]
        assert server.connections == 1  # not one per request
        # A reader that stops after the whole body (a header read) still gives it back.
        first = next(fetcher.chunks(f"http://cdn.example.com:{server.port}/h", chunk_size=4096))
        assert first.endswith(b"/h") and server.connections == 1
    finally:
        server.close()


def test_a_kept_connection_serves_only_its_host_and_vetted_address() -> None:
    server = _KeepAlive()
    try:
        addresses = {"a.example.com": "127.0.0.1", "b.example.com": "127.0.0.1"}
        fetcher = Fetcher(FetchPolicy(trusted_networks=LOOPBACK_ONLY),
                          lambda host, port: [addresses[host]])
        for host in ("a.example.com", "b.example.com", "a.example.com", "b.example.com"):
            b"".join(fetcher.chunks(f"http://{host}:{server.port}/x"))
        assert server.connections == 2  # one per host, each reused once
        # A connection opened (and, over TLS, verified) for one host never serves another.
        assert all(len(hosts) == 1 for hosts in server.by_connection.values())
        assert server.hosts == [f"{h}:{server.port}" for h in
                                ("a.example.com", "b.example.com", "a.example.com", "b.example.com")]
        # The name now resolves somewhere the guard refuses: the kept connection to the old
        # address is not a way around the check.
        addresses["a.example.com"] = "10.0.0.1"
        with pytest.raises(ConversionError) as refused:
            b"".join(fetcher.chunks(f"http://a.example.com:{server.port}/x"))
        assert refused.value.code == "url_refused" and len(server.hosts) == 4
    finally:
        server.close()


def test_a_connection_the_server_closed_is_replaced() -> None:
    server = _KeepAlive()
    try:
        fetcher = Fetcher(FetchPolicy(trusted_networks=LOOPBACK_ONLY), resolver_to("127.0.0.1"))
        b"".join(fetcher.chunks(f"http://cdn.example.com:{server.port}/1"))
        for idle in fetcher._idle.values():
            for conn in idle:
                assert conn.sock is not None
                conn.sock.shutdown(2)  # as a server's idle timeout would
        assert b"".join(fetcher.chunks(f"http://cdn.example.com:{server.port}/2")).endswith(b"/2")
        assert server.connections == 2
    finally:
        server.close()
