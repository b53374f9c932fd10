"""Reading URLs found in exports, which are untrusted (SPEC §7).

`Fetcher` speaks HTTP(S) only to public addresses: it resolves the host itself, refuses
loopback, private, link-local (the metadata server), site-local and other non-global
addresses, including IPv4 addresses embedded in IPv6 ones (mapped, compatible, NAT64, 6to4,
Teredo), then connects to the address it checked (no second lookup an attacker could answer
differently), and checks every redirect the same way.  Size is capped, and time by a
wall-clock watchdog that closes the socket: a server that drips bytes cannot stretch it.

`UrlReader` routes a URL to the fetcher, to the storage adapter (`gs://`), or to a local
file (command line only).
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

from shared.errors import ConversionError, TooLargeError, TransientError
from shared.io.storage import AccessDenied, NotFound, ObjectStore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
REDIRECTS = {301, 302, 303, 307, 308}
# IPv6 ranges that are never a public destination although Python's `is_global` says so.
_V6_REFUSED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "64:ff9b:1::/48",  # NAT64 local-use prefix (RFC 8215)
    )
)
# IPv6 forms whose last 32 bits are an IPv4 address that a translator will connect to.
_V4_IN_LOW_BITS = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # IPv4-compatible ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped ::ffff:a.b.c.d
        "::ffff:0:0:0/96",  # IPv4-translated ::ffff:0:a.b.c.d (SIIT)
        "64:ff9b::/96",  # NAT64 well-known prefix (RFC 6052)
    )
)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 one carries (a translator or tunnel would reach it)."""
    found = []
    if any(ip in net for net in _V4_IN_LOW_BITS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


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
    # Both: real exports hold plain-http CDN URLs; every address check applies to both.
    schemes: frozenset[str] = frozenset({"http", "https"})
    # Empty: any public host.  Entries: `host`, `.suffix.example` or `gs://bucket`.
    allow_hosts: tuple[str, ...] = ()
    # `gs://` URLs may name only these buckets (the input bucket, plus the allow-list's).
    buckets: tuple[str, ...] = ()
    # Only tests widen this (to loopback); production never trusts a non-global address.
    trusted_networks: tuple[IPNetwork, ...] = ()
    max_redirects: int = 3
    ca_certs: str | None = None  # None: certifi's bundle; tests pass their own CA

    def host_allowed(self, host: str) -> bool:
        web = [h for h in self.allow_hosts if not h.startswith("gs://")]
        if not web:
            return True
        host = host.lower().rstrip(".")
        return any(
            host == h.lower() or (h.startswith(".") and host.endswith(h.lower())) for h in web
        )

    def bucket_allowed(self, bucket: str) -> bool:
        return bucket in self.buckets

    def address_allowed(self, ip: IPAddress) -> bool:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if any(ip in net or (mapped and mapped in net) for net in self.trusted_networks):
            return True
        if not ip.is_global or ip.is_multicast:
            return False
        if isinstance(ip, ipaddress.IPv6Address):
            if any(ip in net for net in _V6_REFUSED):
                return False
            return all(self.address_allowed(v4) for v4 in embedded_ipv4(ip))
        return True


def refused(url: str, why: str) -> ConversionError:
    return ConversionError("url_refused", f"refused to fetch {url}: {why}")


# Idle kept-alive connections per (scheme, host, port, vetted address): a batch's header
# reads to one CDN reuse their TCP (and TLS) connections instead of opening one each.
IDLE_PER_ADDRESS = 64
_PoolKey = tuple[str, str, int, str]


class Fetcher:
    def __init__(self, policy: FetchPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy, self.resolver = policy, resolver
        self._idle: dict[_PoolKey, list[HTTPConnection]] = {}
        self._idle_lock = threading.Lock()

    def _take(self, key: _PoolKey) -> HTTPConnection | None:
        with self._idle_lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _give_back(self, key: _PoolKey, conn: HTTPConnection) -> None:
        """Keep a connection whose response was read to its end. The key holds the address
        every new request is vetted to again, so a kept connection only ever serves the host
        and address it was opened for."""
        with self._idle_lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < IDLE_PER_ADDRESS:
                idle.append(conn)
                return
        conn.close()

    def _open(self, key: _PoolKey, timeout: float) -> HTTPConnection:
        scheme, host, port, address = key
        if scheme == "https":
            return HTTPSConnection(
                address,
                port,
                timeout=timeout,
                server_hostname=host,
                assert_hostname=host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.policy.ca_certs or certifi.where(),
            )
        return HTTPConnection(address, port, timeout=timeout)

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

    def _connect(
        self, url: str, deadline: float, watchdog: _Watchdog
    ) -> tuple[urllib3.BaseHTTPResponse, HTTPConnection, _PoolKey]:
        for _ in range(self.policy.max_redirects + 1):
            key = self.vet(url)
            scheme, host, port, address = key
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            remaining = max(0.1, deadline - time.monotonic())
            # The socket timeout bounds each wait; the watchdog bounds them all together.
            kept = self._take(key)
            if kept is not None:
                try:
                    response = self._send(kept, path, host, parts.port, port, remaining, watchdog)
                    conn = kept
                except (OSError, urllib3.exceptions.HTTPError):
                    # The server closed the idle connection: open a new one.
                    kept.close()
                    kept = None
            if kept is None:
                conn = self._open(key, remaining)
                try:
                    response = self._send(conn, path, host, parts.port, port, remaining, watchdog)
                except urllib3.exceptions.NewConnectionError as exc:
                    raise ConversionError(
                        "url_unreachable", f"cannot connect to {host}: {exc}"
                    ) from None
                except (ssl.SSLError, urllib3.exceptions.SSLError, CertificateError) as exc:
                    if watchdog.fired:
                        raise watchdog.fault(url, exc) from exc
                    # A certificate that does not verify is the server's lasting property.
                    raise ConversionError(
                        "url_unreachable", f"TLS failure for {host}: {exc}"
                    ) from None
                except (OSError, urllib3.exceptions.HTTPError) as exc:
                    raise watchdog.fault(url, exc) from exc
            if response.status in REDIRECTS:
                location = response.headers.get("Location", "")
                conn.close()
                if not location:
                    raise ConversionError("url_unreachable", f"redirect without Location: {url}")
                url = urljoin(url, location)
                continue
            if response.status == 429 or response.status >= 500:
                conn.close()
                raise TransientError(f"{url} answered HTTP {response.status}")
            if response.status != 200:
                conn.close()
                raise ConversionError("url_unreachable", f"{url} answered HTTP {response.status}")
            return response, conn, key
        raise refused(url, f"more than {self.policy.max_redirects} redirects")

    @staticmethod
    def _send(
        conn: HTTPConnection,
        path: str,
        host: str,
        url_port: int | None,
        port: int,
        timeout: float,
        watchdog: _Watchdog,
    ) -> urllib3.BaseHTTPResponse:
        watchdog.watch(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        host_header = host if url_port is None else f"{host}:{port}"
        conn.request(
            "GET",
            path,
            headers={"Host": host_header, "User-Agent": "gtcoco"},
            preload_content=False,
        )
        return conn.getresponse()

    def chunks(self, url: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Body chunks; stop iterating to close the connection early."""
        deadline = time.monotonic() + self.policy.timeout_s
        watchdog = _Watchdog(self.policy.timeout_s)
        kept: tuple[_PoolKey, HTTPConnection] | None = None
        response: urllib3.BaseHTTPResponse | None = None
        try:
            response, conn, key = self._connect(url, deadline, watchdog)
            total = 0
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, urllib3.exceptions.HTTPError) as exc:
                    raise watchdog.fault(url, exc) from exc
                if watchdog.fired:
                    raise watchdog.fault(url, None)
                if not chunk:
                    break
                total += len(chunk)
                if total > self.policy.max_bytes:
                    raise TooLargeError(
                        "fetch_too_large",
                        f"{url} is over the fetch limit of {self.policy.max_bytes} bytes",
                    )
                if response.length_remaining == 0:
                    kept = (key, conn)  # read to its end, even if the reader stops here
                yield chunk
            kept = (key, conn)
        finally:
            reusable = (
                kept is not None
                and response is not None
                and not watchdog.fired
                and response.length_remaining == 0
                and not getattr(getattr(response, "_original_response", None), "will_close", True)
            )
            if reusable and kept is not None:
                watchdog.forget(kept[1])
            watchdog.close()
            if reusable and kept is not None:
                self._give_back(*kept)


class _Alarms:
    """One thread firing every fetch's deadline (a thread per fetch costs more than a
    header read): `after` schedules, the returned alarm's `cancel` withdraws."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._count = 0
        self._thread: threading.Thread | None = None

    def after(self, seconds: float, action: Callable[[], None]) -> _Alarm:
        alarm = _Alarm(action)
        with self._cond:
            self._count += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._count, alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="gtcoco-fetch-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return alarm

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                due = self._heap[0][0] - time.monotonic()
                if due > 0:
                    self._cond.wait(due)
                    continue
                _, _, alarm = heapq.heappop(self._heap)
            if not alarm.cancelled:
                alarm.action()


class _Alarm:
    def __init__(self, action: Callable[[], None]) -> None:
        self.action, self.cancelled = action, False

    def cancel(self) -> None:
        self.cancelled = True


_CLOCK = _Alarms()


class _Watchdog:
    """Closes the fetch's socket when its wall-clock budget is spent: per-read timeouts
    alone let a server that sends a byte now and then hold a worker for hours."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.fired = seconds, False
        self._conns: list[HTTPConnection] = []
        self._lock = threading.Lock()
        self._timer = _CLOCK.after(seconds, self._fire)

    def watch(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._conns.append(conn)
            if self.fired:
                conn.close()

    def forget(self, conn: HTTPConnection) -> None:
        """Stop watching a connection that goes back to the pool (close() would close it)."""
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for conn in self._conns:
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def fault(self, url: str, exc: BaseException | None) -> TransientError:
        if self.fired:
            return TransientError(f"fetching {url} took over {self.seconds}s")
        return TransientError(f"fetching {url}: {exc}")

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for conn in self._conns:
                conn.close()


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
        try:
            for chunk in chunks:
                total += len(chunk)
                if total > self.fetcher.policy.max_bytes:
                    raise TooLargeError("fetch_too_large", f"{url} is over the fetch limit")
                yield chunk
        except NotFound:
            # An object the export names and that is not there: the export's fault.
            raise ConversionError("url_unreachable", f"{url}: no such object") from None
        except AccessDenied as exc:
            raise ConversionError("url_unreachable", f"{url}: storage refused: {exc}") from None

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
