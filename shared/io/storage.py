"""Object stores: the one module that imports google.cloud (Cloud Storage, and the Cloud
Tasks client the queue uses), plus a local-folder twin.

Everything else sees `ObjectStore`: bytes in and out by name, generations for
preconditions, and two exceptions (`NotFound`, `PreconditionFailed`).  Transient faults
(429/5xx, timeouts, resets) surface as `TransientError` so the platform retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ConfigurationError, GtcocoError, TransientError

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client

# Metadata stamped on every object this pipeline writes, so it is never processed again.
OUTPUT_MARKER = "gtcoco-output"


class NotFound(GtcocoError):
    http_status, code = 404, "not_found"


class PreconditionFailed(GtcocoError):
    """A generation precondition did not hold: someone else wrote first."""

    http_status, code = 412, "precondition_failed"


class AccessDenied(GtcocoError):
    """The service refused the request itself (400, 401, 403): retrying cannot help.  For an
    object an export names this is the input's fault (poison); for our own buckets it is
    the deployment's (IAM), which the pipeline reports as a configuration error."""

    http_status, code = 403, "access_denied"


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    generation: int | None
    metadata: dict[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    bucket: str

    def uri(self, name: str) -> str: ...

    def stat(self, name: str) -> ObjectInfo | None: ...

    def read(self, name: str, generation: int | None = None) -> bytes: ...

    def read_range(
        self, name: str, start: int, end: int, generation: int | None = None
    ) -> bytes: ...

    def read_if_exists(self, name: str) -> tuple[bytes, int] | None: ...

    def write(
        self, name: str, data: bytes, content_type: str, if_generation_match: int | None = None
    ) -> int: ...

    def write_file(self, name: str, path: Path, content_type: str) -> int:
        """Upload a local file, streamed from disk (files larger than memory)."""
        ...

    # Whether `copy_from` copies inside the storage service (else it reads and writes).
    can_copy_from_gcs: bool

    def copy_from(self, bucket: str, name: str, target: str) -> int:
        """Copy `gs://bucket/name` to `target`."""
        ...

    def list(self, prefix: str = "", suffixes: tuple[str, ...] = ()) -> list[str]:
        """Names under `prefix` in order; with `suffixes`, only names ending in one of them
        (the others are never held: a dataset's listing keeps its reports alone)."""
        ...

    def delete(self, name: str, if_generation_match: int | None = None) -> bool:
        """Remove an object; False when there was none.  With `if_generation_match`, only
        that generation (else `PreconditionFailed`)."""
        ...


def content_type_for(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".png"):
        return "image/png"
    return "application/octet-stream"


# ---------------------------------------------------------------------------------------
# Local folders (the command line) and memory (HTTP /convert, unit tests)


class LocalStore:
    """A folder as a bucket.  Generations are mtimes; preconditions hold under a file lock."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.bucket = str(self.root)

    def uri(self, name: str) -> str:
        return str(self.root / name)

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{name!r} escapes {self.root}")
        return path

    def stat(self, name: str) -> ObjectInfo | None:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(name, st.st_size, st.st_mtime_ns)

    def read(self, name: str, generation: int | None = None) -> bytes:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound(name) from exc

    def read_range(self, name: str, start: int, end: int, generation: int | None = None) -> bytes:
        try:
            with self._path(name).open("rb") as f:
                f.seek(start)
                return f.read(max(0, end - start))
        except FileNotFoundError as exc:
            raise NotFound(name) from exc

    def read_if_exists(self, name: str) -> tuple[bytes, int] | None:
        info = self.stat(name)
        if info is None:
            return None
        return self.read(name), int(info.generation or 0)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".gtcoco.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def write(
        self, name: str, data: bytes, content_type: str, if_generation_match: int | None = None
    ) -> int:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if if_generation_match is not None:
                info = self.stat(name)
                current = 0 if info is None else int(info.generation or 0)
                if current != if_generation_match:
                    raise PreconditionFailed(name)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return path.stat().st_mtime_ns

    can_copy_from_gcs = False

    def write_file(self, name: str, path: Path, content_type: str) -> int:
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
        return target.stat().st_mtime_ns

    def copy_from(self, bucket: str, name: str, target: str) -> int:
        return self.write(target, GcsStore(bucket).read(name), content_type_for(target))

    def list(self, prefix: str = "", suffixes: tuple[str, ...] = ()) -> list[str]:
        """Names starting with `prefix`, as in a bucket: `a/b` lists `a/b.json` and `a/b/c`."""
        folder = prefix.rpartition("/")[0]
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return []
        # Strings from os.walk, not a Path per file: a listing of 200,000 files held as
        # Path objects costs about 100 MB more at its peak.
        root, found = str(self.root), []
        for directory, _, files in os.walk(base):
            rel = os.path.relpath(directory, root)
            head = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            names = (head + f for f in files if not f.startswith("."))
            found += [n for n in names if not suffixes or n.endswith(suffixes)]
        return sorted(n for n in found if n.startswith(prefix))

    def delete(self, name: str, if_generation_match: int | None = None) -> bool:
        with self._locked():
            if if_generation_match is not None:
                info = self.stat(name)
                if info is None or info.generation != if_generation_match:
                    raise PreconditionFailed(name)
            try:
                self._path(name).unlink()
            except FileNotFoundError:
                return False
            return True


class MemoryStore:
    """A bucket in memory with real generation semantics (thread-safe)."""

    def __init__(self, bucket: str = "memory") -> None:
        self.bucket = bucket
        self.objects: dict[str, tuple[bytes, int, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def uri(self, name: str) -> str:
        return f"mem://{self.bucket}/{name}"

    def stat(self, name: str) -> ObjectInfo | None:
        with self._lock:
            if name not in self.objects:
                return None
            data, gen, meta = self.objects[name]
            return ObjectInfo(name, len(data), gen, dict(meta))

    def read(self, name: str, generation: int | None = None) -> bytes:
        with self._lock:
            if name not in self.objects:
                raise NotFound(name)
            data, gen, _ = self.objects[name]
            if generation is not None and gen != generation:
                raise NotFound(f"{name}#{generation}")
            return data

    def read_range(self, name: str, start: int, end: int, generation: int | None = None) -> bytes:
        return self.read(name, generation)[start:end]

    def read_if_exists(self, name: str) -> tuple[bytes, int] | None:
        with self._lock:
            if name not in self.objects:
                return None
            data, gen, _ = self.objects[name]
            return data, gen

    def write(
        self,
        name: str,
        data: bytes,
        content_type: str,
        if_generation_match: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> int:
        with self._lock:
            current = self.objects.get(name, (b"", 0, {}))[1]
            if if_generation_match is not None and current != if_generation_match:
                raise PreconditionFailed(name)
            self._generation += 1
            self.objects[name] = (
                bytes(data),
                self._generation,
                metadata if metadata is not None else {OUTPUT_MARKER: "1"},
            )
            return self._generation

    can_copy_from_gcs = False

    def write_file(self, name: str, path: Path, content_type: str) -> int:
        return self.write(name, path.read_bytes(), content_type)

    def copy_from(self, bucket: str, name: str, target: str) -> int:
        return self.write(target, GcsStore(bucket).read(name), content_type_for(target))

    def list(self, prefix: str = "", suffixes: tuple[str, ...] = ()) -> list[str]:
        with self._lock:
            return sorted(
                n
                for n in self.objects
                if n.startswith(prefix) and (not suffixes or n.endswith(suffixes))
            )

    def delete(self, name: str, if_generation_match: int | None = None) -> bool:
        with self._lock:
            if if_generation_match is not None and (
                name not in self.objects or self.objects[name][1] != if_generation_match
            ):
                raise PreconditionFailed(name)
            return self.objects.pop(name, None) is not None


# ---------------------------------------------------------------------------------------
# Cloud Tasks: its client lives here too, so that one module imports google.cloud.

TASKS_EMULATOR_ENV = "CLOUD_TASKS_EMULATOR_HOST"  # host:port of gcloud-tasks-emulator (tests)


@functools.cache
def tasks_client() -> Any:
    """One Cloud Tasks client per process; over plain gRPC to the emulator when
    CLOUD_TASKS_EMULATOR_HOST names one."""
    from google.cloud import tasks_v2

    emulator = os.environ.get(TASKS_EMULATOR_ENV)
    if not emulator:
        return tasks_v2.CloudTasksClient()
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(emulator)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def create_task(client: Any, parent: str, task: Mapping[str, Any]) -> bool:
    """Create `task` on the queue `parent`; False when a task of its name exists already.
    The client's errors become ours: a refused or missing queue is the deployment's fault,
    an unavailable service a transient one."""
    from google.api_core import exceptions

    try:
        client.create_task(parent=parent, task=task)
    except exceptions.AlreadyExists:
        return False
    except (exceptions.PermissionDenied, exceptions.NotFound) as exc:
        raise ConfigurationError(f"Cloud Tasks refused the queue: {exc}") from exc
    except (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded) as exc:
        raise TransientError(f"Cloud Tasks: {exc}") from exc
    return True


# ---------------------------------------------------------------------------------------
# Google Cloud Storage


@functools.cache
def gcs_client() -> Client:
    """One client per process (instance), created on first use, never at import time."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    try:
        client = storage.Client()
    except DefaultCredentialsError as exc:
        raise ConfigurationError(
            "no Google Cloud credentials for gs:// (run `gcloud auth application-default "
            f"login`, or set GOOGLE_APPLICATION_CREDENTIALS): {exc}"
        ) from None
    # requests keeps 10 connections a host by default: a pool of more IO workers would open
    # and drop a connection (TLS handshake included) on almost every call.  The adapter
    # only caps the idle connections kept; the IO pool bounds how many are in use.
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=CONNECTIONS_KEPT)
    for scheme in ("https://", "http://"):
        client._http.mount(scheme, adapter)
    return client


CONNECTIONS_KEPT = 256  # above any sensible GTCOCO_IO_WORKERS


@contextlib.contextmanager
def _translated(name: str) -> Iterator[None]:
    from google.api_core import exceptions as gexc
    from requests import exceptions as rexc

    try:
        yield
    except gexc.NotFound as exc:
        raise NotFound(name) from exc
    except gexc.PreconditionFailed as exc:
        raise PreconditionFailed(name) from exc
    except (gexc.BadRequest, gexc.Unauthorized, gexc.Forbidden) as exc:
        raise AccessDenied(f"{name}: {exc}") from exc
    except (gexc.TooManyRequests, gexc.ServerError, gexc.RetryError) as exc:
        raise TransientError(f"storage fault on {name}: {exc}") from exc
    except (rexc.ConnectionError, rexc.Timeout, ConnectionError, TimeoutError) as exc:
        raise TransientError(f"storage connection fault on {name}: {exc}") from exc


DEFAULT_RETRY_DEADLINE_S = 60.0


class GcsStore:
    """A bucket through google-cloud-storage.  Every call, read or write, retries 429/5xx
    with the library's own exponential backoff and jitter, bounded by `retry_deadline_s`;
    past it the fault surfaces as a TransientError and the platform retries the event."""

    def __init__(
        self,
        bucket: str,
        client: Client | None = None,
        retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S,
    ) -> None:
        self.bucket = bucket
        self._client = client
        self.retry_deadline_s = retry_deadline_s

    @functools.cached_property
    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_deadline_s)

    # One HTTP request's own timeout (the library's default); the deadline bounds retries.
    _timeout = 60.0

    @functools.cached_property
    def _bucket(self) -> Bucket:
        return (self._client or gcs_client()).bucket(self.bucket)

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket}/{name}"

    def stat(self, name: str) -> ObjectInfo | None:
        with _translated(name):
            blob = self._bucket.get_blob(name, retry=self._retry, timeout=self._timeout)
        if blob is None:
            return None
        return ObjectInfo(name, int(blob.size or 0), blob.generation, dict(blob.metadata or {}))

    def read(self, name: str, generation: int | None = None) -> bytes:
        with _translated(name):
            data: bytes = self._bucket.blob(name, generation=generation).download_as_bytes(
                retry=self._retry, timeout=self._timeout
            )
            return data

    def read_range(self, name: str, start: int, end: int, generation: int | None = None) -> bytes:
        if end <= start:
            return b""
        with _translated(name):
            try:
                data: bytes = self._bucket.blob(name, generation=generation).download_as_bytes(
                    start=start, end=end - 1, retry=self._retry, timeout=self._timeout
                )
            except Exception as exc:  # 416: the range starts past the end of the object
                if getattr(exc, "code", None) == 416:
                    return b""
                raise
            return data

    def read_if_exists(self, name: str) -> tuple[bytes, int] | None:
        with _translated(name):
            blob = self._bucket.get_blob(name, retry=self._retry, timeout=self._timeout)
            if blob is None:
                return None
            try:
                data = blob.download_as_bytes(
                    if_generation_match=blob.generation, retry=self._retry, timeout=self._timeout
                )
            except Exception as exc:
                if type(exc).__name__ in {"NotFound", "PreconditionFailed"}:
                    return self.read_if_exists(name)  # replaced between stat and read
                raise
        return data, int(blob.generation)

    def write(
        self, name: str, data: bytes, content_type: str, if_generation_match: int | None = None
    ) -> int:
        with _translated(name):
            blob = self._bucket.blob(name)
            blob.metadata = {OUTPUT_MARKER: "1"}
            kwargs: dict[str, Any] = {}
            if if_generation_match is not None:
                kwargs["if_generation_match"] = if_generation_match
            blob.upload_from_string(
                data, content_type=content_type, retry=self._retry, timeout=self._timeout, **kwargs
            )
        return int(blob.generation or 0)

    can_copy_from_gcs = True

    def write_file(self, name: str, path: Path, content_type: str) -> int:
        with _translated(name):
            blob = self._bucket.blob(name)
            blob.metadata = {OUTPUT_MARKER: "1"}
            blob.upload_from_filename(
                str(path), content_type=content_type, retry=self._retry, timeout=self._timeout
            )
        return int(blob.generation or 0)

    def copy_from(self, bucket: str, name: str, target: str) -> int:
        """Inside the storage service: the bytes never pass through this process."""
        with _translated(f"gs://{bucket}/{name}"):
            source = (self._client or gcs_client()).bucket(bucket)
            copied = source.copy_blob(
                source.blob(name), self._bucket, target, retry=self._retry, timeout=self._timeout
            )
        return int(copied.generation or 0)

    def list(self, prefix: str = "", suffixes: tuple[str, ...] = ()) -> list[str]:
        with _translated(prefix):
            return sorted(
                b.name
                for b in (self._client or gcs_client()).list_blobs(
                    self.bucket, prefix=prefix or None, retry=self._retry, timeout=self._timeout
                )
                if not suffixes or b.name.endswith(suffixes)
            )

    def delete(self, name: str, if_generation_match: int | None = None) -> bool:
        try:
            with _translated(name):
                self._bucket.delete_blob(
                    name,
                    if_generation_match=if_generation_match,
                    retry=self._retry,
                    timeout=self._timeout,
                )
        except NotFound:
            if if_generation_match is not None:
                raise PreconditionFailed(name) from None
            return False
        return True


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/some/prefix` -> (bucket, prefix)."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri}")
    return bucket, prefix


class PrefixStore:
    """A store seen through a name prefix (`gs://bucket/some/prefix` destinations)."""

    def __init__(self, inner: ObjectStore, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.bucket = inner.bucket
        self.can_copy_from_gcs = inner.can_copy_from_gcs

    def uri(self, name: str) -> str:
        return self.inner.uri(self.prefix + name)

    def stat(self, name: str) -> ObjectInfo | None:
        info = self.inner.stat(self.prefix + name)
        return None if info is None else ObjectInfo(name, info.size, info.generation, info.metadata)

    def read(self, name: str, generation: int | None = None) -> bytes:
        return self.inner.read(self.prefix + name, generation)

    def read_range(self, name: str, start: int, end: int, generation: int | None = None) -> bytes:
        return self.inner.read_range(self.prefix + name, start, end, generation)

    def read_if_exists(self, name: str) -> tuple[bytes, int] | None:
        return self.inner.read_if_exists(self.prefix + name)

    def write(
        self, name: str, data: bytes, content_type: str, if_generation_match: int | None = None
    ) -> int:
        return self.inner.write(self.prefix + name, data, content_type, if_generation_match)

    def write_file(self, name: str, path: Path, content_type: str) -> int:
        return self.inner.write_file(self.prefix + name, path, content_type)

    def copy_from(self, bucket: str, name: str, target: str) -> int:
        return self.inner.copy_from(bucket, name, self.prefix + target)

    def list(self, prefix: str = "", suffixes: tuple[str, ...] = ()) -> list[str]:
        return [n[len(self.prefix) :] for n in self.inner.list(self.prefix + prefix, suffixes)]

    def delete(self, name: str, if_generation_match: int | None = None) -> bool:
        return self.inner.delete(self.prefix + name, if_generation_match)


def open_store(location: str, retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S) -> ObjectStore:
    """`gs://bucket[/prefix]` or a local folder."""
    if location.startswith("gs://"):
        bucket, prefix = parse_gs_uri(location)
        store: ObjectStore = GcsStore(bucket, retry_deadline_s=retry_deadline_s)
        return PrefixStore(store, prefix) if prefix else store
    return LocalStore(Path(location))
