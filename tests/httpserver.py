"""A loopback HTTP(S) server that counts hits and serves scripted answers (tests only)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Drip:
    """A 200 whose body arrives one byte every `interval` seconds."""

    size: int
    interval: float


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops bursts of connections (1 s SYN retry)


class CountingServer:
    def __init__(self, host: str = "127.0.0.1",
                 routes: Mapping[str, Answer | Callable[[], Answer] | Drip] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.routes = dict(routes or {})
        self.hits: list[str] = []
        self.bytes_sent = 0
        self.scheme = "https" if tls else "http"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.hits.append(self.path)
                answer = outer.routes.get(self.path, (404, {}, b"not found"))
                if isinstance(answer, Drip):
                    self._drip(answer)
                    return
                status, headers, body = answer() if callable(answer) else answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body)
                    outer.bytes_sent += len(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _drip(self, drip: Drip) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(drip.size))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for _ in range(drip.size):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        outer.bytes_sent += 1
                        time.sleep(drip.interval)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server((host, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.host, self.port = host, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
