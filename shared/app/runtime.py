"""Assembles stores, the guarded fetcher, the registry and the converter from configuration."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from shared.app.assemble import Assembler
from shared.app.pipeline import Pipeline
from shared.app.stages import Converter
from shared.config import Config
from shared.errors import ConversionError
from shared.io.fetch import Fetcher, FetchPolicy, Resolver, UrlReader, system_resolver
from shared.io.queue import CloudTasksQueue, QueueTarget, TaskQueue
from shared.io.registry import CategoryRegistry, parse_seed
from shared.io.storage import GcsStore, ObjectStore, parse_gs_uri


def fetch_policy(config: Config, buckets: tuple[str, ...] = (), **overrides: Any) -> FetchPolicy:
    """The guard for URLs in exports; `gs://` may name the input bucket, the allow-list's
    `gs://` entries and `buckets` (the command line's source buckets), nothing else."""
    allowed = {config.input_bucket, *buckets}
    allowed |= {h[5:].strip("/") for h in config.fetch_allow_hosts if h.startswith("gs://")}
    base = FetchPolicy(
        max_bytes=config.limits.fetch_max_bytes,
        timeout_s=config.limits.fetch_timeout_s,
        allow_hosts=config.fetch_allow_hosts,
        buckets=tuple(sorted(allowed - {""})),
        schemes=frozenset({"https"} if config.fetch_https_only else {"http", "https"}),
    )
    return dataclasses.replace(base, **overrides)


@functools.cache
def _bucket(name: str) -> ObjectStore:
    return GcsStore(name, retry_deadline_s=Config.from_env().storage_retry_deadline_s)


def load_seed(location: str, reader: UrlReader) -> list[str]:
    """The categories file: `gs://` through the adapter, else a local path."""
    if not location:
        return []
    if location.startswith("gs://"):
        bucket, name = parse_gs_uri(location)
        return parse_seed(_bucket(bucket).read(name))
    path = Path(location)
    if not path.is_file():
        raise ConversionError("invalid_categories", f"categories file not found: {location}")
    return parse_seed(path.read_bytes())


def build_converter(
    config: Config,
    out: ObjectStore,
    *,
    local_root: Path | None = None,
    policy: FetchPolicy | None = None,
    resolver: Resolver = system_resolver,
    open_bucket: bool = True,
    buckets: tuple[str, ...] = (),
) -> Converter:
    fetcher = Fetcher(policy or fetch_policy(config, buckets), resolver)
    reader = UrlReader(fetcher, _bucket if open_bucket else None, local_root)
    registry = CategoryRegistry(
        out, seed=load_seed(config.categories_seed, reader), limits=config.limits
    )
    return Converter(config, reader, registry)


def build_assembler(
    config: Config,
    out: ObjectStore,
    *,
    policy: FetchPolicy | None = None,
    resolver: Resolver = system_resolver,
    progress: Callable[[str, int, int], None] | None = None,
) -> Assembler:
    """An assembler writing to `out`; images are fetched through the same guard as
    conversion: `gs://` images may name the allow-list's buckets and the buckets the jobs'
    exports came from (as when they were converted), never the outputs' own."""

    def reader_for(buckets: tuple[str, ...]) -> UrlReader:
        return UrlReader(Fetcher(policy or fetch_policy(config, buckets), resolver), _bucket)

    pool = ThreadPoolExecutor(config.io_workers, thread_name_prefix="gtcoco-assemble")
    kwargs = {"progress": progress} if progress is not None else {}
    return Assembler(out, reader_for, pool, max(1, config.io_workers), **kwargs)


def build_queue(config: Config) -> TaskQueue | None:
    """The Cloud Tasks queue of backfills and shards, or None where it is not configured."""
    if not (config.tasks_queue and config.tasks_url and config.tasks_service_account):
        return None
    return CloudTasksQueue(
        QueueTarget(
            config.tasks_queue,
            config.tasks_url,
            config.tasks_service_account,
            config.task_deadline_s,
        )
    )


def build_pipeline(
    config: Config,
    source: ObjectStore,
    out: ObjectStore,
    queue: TaskQueue | None = None,
    **kwargs: Any,
) -> Pipeline:
    """A pipeline from `source` to `out`, fanning big batches out on `queue` (None: none);
    keyword arguments go to `build_converter`."""
    converter = build_converter(config, out, **kwargs)
    return Pipeline(source, out, converter, config.lock_lease_s, queue=queue)
