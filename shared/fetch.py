"""Reading URLs found in exports, which are untrusted (SPEC §7).

`Fetcher` speaks HTTP(S) only to public addresses: it resolves the host itself, refuses
loopback, private, link-local (the metadata server) and other non-global addresses, then
connects to the address it checked (no second lookup an attacker could answer
differently), and checks every redirect the same way.  Size and time are capped.

`UrlReader` routes a URL to the fetcher, to the storage adapter (`gs://`), or to a local
file (command line only).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3

from .errors import ConversionError, TooLargeError, TransientError
from .storage import ObjectStore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
REDIRECTS = {301, 302, 303, 307, 308}


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConversionError("url_unreachable", f"cannot resolve {host}: {exc}") from None
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 256 * 1024 * 1024
    timeout_s: float = 30.0
    schemes: frozenset[str] = frozenset({"https"})
    # Empty: any public host.  Entries: `host`, `.suffix.example` or `gs://bucket`.
    allow_hosts: tuple[str, ...] = ()
    # Only tests widen this (to loopback); production never trusts a non-global address.
    trusted_networks: tuple[IPNetwork, ...] = ()
    max_redirects: int = 3

    def host_allowed(self, host: str) -> bool:
        web = [h for h in self.allow_hosts if not h.startswith("gs://")]
        if not web:
            return True
        host = host.lower().rstrip(".")
        return any(
            host == h.lower() or (h.startswith(".") and host.endswith(h.lower())) for h in web
        )

    def bucket_allowed(self, bucket: str) -> bool:
        buckets = [h[5:].strip("/") for h in self.allow_hosts if h.startswith("gs://")]
        return not buckets or bucket in buckets

    def address_allowed(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.trusted_networks):
            return True
        return ip.is_global and not ip.is_multicast


def refused(url: str, why: str) -> ConversionError:
    return ConversionError("url_refused", f"refused to fetch {url}: {why}")


class Fetcher:
    def __init__(self, policy: FetchPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy, self.resolver = policy, resolver

    def vet(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, address to connect to), or `url_refused`."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in self.policy.schemes:
            raise refused(url, f"scheme {scheme or 'none'!r} is not allowed")
        host = parts.hostname
        if not host:
            raise refused(url, "no host")
        if parts.username or parts.password:
            raise refused(url, "credentials in URLs are not allowed")
        if not self.policy.host_allowed(host):
            raise refused(url, f"host {host} is not in the allow-list")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise refused(url, "bad port") from None
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)]
        if not addresses:
            raise ConversionError("url_unreachable", f"{host} has no address")
        for ip in addresses:
            if not self.policy.address_allowed(ip):
                raise refused(url, f"{host} resolves to non-public address {ip}")
        return scheme, host, port, str(addresses[0])

    def _open(self, url: str, deadline: float) -> urllib3.BaseHTTPResponse:
        for _ in range(self.policy.max_redirects + 1):
            scheme, host, port, address = self.vet(url)
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            remaining = max(0.1, deadline - time.monotonic())
            timeout = urllib3.Timeout(connect=min(10.0, remaining), read=remaining)
            pool: urllib3.HTTPConnectionPool
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address,
                    port,
                    timeout=timeout,
                    retries=False,
                    maxsize=1,
                    server_hostname=host,
                    assert_hostname=host,
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=certifi.where(),
                )
            else:
                pool = urllib3.HTTPConnectionPool(
                    address, port, timeout=timeout, retries=False, maxsize=1
                )
            host_header = host if parts.port is None else f"{host}:{port}"
            try:
                response = pool.urlopen(
                    "GET",
                    path,
                    headers={"Host": host_header, "User-Agent": "gtcoco"},
                    redirect=False,
                    preload_content=False,
                    retries=False,
                )
            except urllib3.exceptions.NewConnectionError as exc:
                raise ConversionError(
                    "url_unreachable", f"cannot connect to {host}: {exc}"
                ) from None
            except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:
                raise TransientError(f"fetching {url}: {exc}") from exc
            except urllib3.exceptions.SSLError as exc:
                raise ConversionError("url_unreachable", f"TLS failure for {host}: {exc}") from None
            if response.status in REDIRECTS:
                location = response.headers.get("Location", "")
                response.release_conn()
                if not location:
                    raise ConversionError("url_unreachable", f"redirect without Location: {url}")
                url = urljoin(url, location)
                continue
            if response.status == 429 or response.status >= 500:
                raise TransientError(f"{url} answered HTTP {response.status}")
            if response.status != 200:
                raise ConversionError("url_unreachable", f"{url} answered HTTP {response.status}")
            return response
        raise refused(url, f"more than {self.policy.max_redirects} redirects")

    def chunks(self, url: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Body chunks; stop iterating to close the connection early."""
        deadline = time.monotonic() + self.policy.timeout_s
        response = self._open(url, deadline)
        total = 0
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TransientError(f"fetching {url} took over {self.policy.timeout_s}s")
                try:
                    chunk = response.read(chunk_size)
                except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:
                    raise TransientError(f"fetching {url}: {exc}") from exc
                if not chunk:
                    return
                total += len(chunk)
                if total > self.policy.max_bytes:
                    raise TooLargeError(
                        "fetch_too_large",
                        f"{url} is over the fetch limit of {self.policy.max_bytes} bytes",
                    )
                yield chunk
        finally:
            response.release_conn()
            response.close()


def _growing(read: Callable[[int, int], bytes], first: int = 4096) -> Iterator[bytes]:
    """Ranged reads of growing size: small for headers, cheap for whole objects."""
    offset, size = 0, first
    while True:
        chunk = read(offset, offset + size)
        if not chunk:
            return
        yield chunk
        offset += len(chunk)
        if len(chunk) < size:
            return
        size = min(size * 4, 8 * 1024 * 1024)


class UrlReader:
    """Routes a URL from an export to the right reader, each guarded."""

    def __init__(
        self,
        fetcher: Fetcher,
        open_bucket: Callable[[str], ObjectStore] | None = None,
        local_root: Path | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.open_bucket = open_bucket
        self.local_root = local_root  # set only by the command line

    def chunks(self, url: str, relative_to: str = "", first: int = 4096) -> Iterator[bytes]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "gs":
            if self.open_bucket is None:
                raise refused(url, "gs:// is not available here")
            bucket, name = parts.netloc, parts.path.lstrip("/")
            if not bucket or not name:
                raise refused(url, "a gs:// URL needs a bucket and an object")
            if not self.fetcher.policy.bucket_allowed(bucket):
                raise refused(url, f"bucket {bucket} is not in the allow-list")
            store = self.open_bucket(bucket)
            return self._checked(_growing(lambda a, b: store.read_range(name, a, b), first), url)
        if scheme in {"", "file"} and self.local_root is not None:
            return self._local(parts.path if scheme == "file" else url, relative_to, first)
        if scheme in {"", "file"}:
            raise refused(url, "local files are read only from the command line")
        return self.fetcher.chunks(url, chunk_size=first)

    def _checked(self, chunks: Iterator[bytes], url: str) -> Iterator[bytes]:
        total = 0
        for chunk in chunks:
            total += len(chunk)
            if total > self.fetcher.policy.max_bytes:
                raise TooLargeError("fetch_too_large", f"{url} is over the fetch limit")
            yield chunk

    def _local(self, path: str, relative_to: str, first: int) -> Iterator[bytes]:
        assert self.local_root is not None
        base = (self.local_root / relative_to).parent if relative_to else self.local_root
        target = (base / path).resolve()
        if not target.is_file():
            raise ConversionError("url_unreachable", f"no such file: {target}")

        def read(a: int, b: int) -> bytes:
            with target.open("rb") as f:
                f.seek(a)
                return f.read(b - a)

        return self._checked(_growing(read, first), str(target))

    def read_all(self, url: str, relative_to: str = "") -> bytes:
        return b"".join(self.chunks(url, relative_to, first=1024 * 1024))
