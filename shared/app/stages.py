"""The three stages run as one loop for every entry point: `Converter.run` takes a
document's jobs, resolves them a window ahead (`resolve`), converts each in order
(`convert`, pure) and hands out results for the caller to persist (`persist`, the
pipeline) or to answer with (HTTP `/convert`).

    document ─► jobs ─► resolve (pool: headers, masks, ids) ─► convert ─► persist / answer
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.app import layout
from shared.app.convert import JobOutput, convert_job
from shared.app.resolve import JobResolver, Pending, prefetch
from shared.config import Config
from shared.errors import ConversionError
from shared.gtstudio.batches import Document, read_document, whole_document
from shared.gtstudio.jobs import parse_job
from shared.gtstudio.records import Job
from shared.io.fetch import UrlReader
from shared.io.registry import CategoryRegistry
from shared.jsonio import Chunked


@dataclass(frozen=True)
class ParsedJob:
    subkey: str  # "" for a single job, else the reference id (or position) in a batch
    job: Job | None
    error: ConversionError | None = None
    segment: str = ""  # its folder under `jobs/` (layout.job_segment); "" for a single job
    position: int = 0


Result = tuple[ParsedJob, JobOutput | ConversionError]


class Converter:
    """Documents in, per-job results out.  IO only through the resolver's reader and
    registry, on one pool of `config.io_workers` threads."""

    def __init__(
        self,
        config: Config,
        reader: UrlReader,
        registry: CategoryRegistry,
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self.config, self.reader, self.registry = config, reader, registry
        self.limits, self.options = config.limits, config.options
        self.pool = pool or ThreadPoolExecutor(config.io_workers, thread_name_prefix="gtcoco-io")
        self.resolver = JobResolver(reader, registry, self.limits, self.pool)
        # Jobs resolved ahead of the one converting: enough to keep every worker busy.
        self.window = max(1, config.io_workers)

    # -- parsing ------------------------------------------------------------------------

    def read(self, data: bytes | Chunked, name: str) -> Document:
        return read_document(data, name, self.limits)

    def parse(
        self, document: Document | Any, positions: range | None = None
    ) -> Iterator[ParsedJob]:
        """Jobs of a document, parsed one at a time; in a batch, one bad job does not stop
        the others.  A batch job's folder is named from its reference id, or from its
        position where the id is missing or repeated (over the whole batch, so a shard's
        `positions` name their folders as a whole run does)."""
        if not isinstance(document, Document):
            document = whole_document(document, self.limits)
        if not document.is_batch:
            yield _parsed(document.doc, "", self.limits)
            return
        counts: dict[str | None, int] = {}
        for ref in document.references:
            counts[ref] = counts.get(ref, 0) + 1
        for position, ((pointer, item), ref) in enumerate(
            zip(document.jobs(), document.references, strict=True)
        ):
            if positions is not None and position not in positions:
                continue
            parsed = _parsed(item, pointer, self.limits)
            yield ParsedJob(
                ref or str(position),
                parsed.job,
                parsed.error,
                layout.job_segment(ref, position, counts[ref] > 1),
                position,
            )

    # -- the loop -------------------------------------------------------------------------

    def run(
        self,
        jobs: Iterable[ParsedJob],
        key: str,
        relative_to: str = "",
        files: bool = True,
        mask: bytes | None = None,
        nested: bool = True,
    ) -> Iterator[Result]:
        """Each job's output (or the error that stopped it), in job order; `key` is the
        input's, a batch job's is `key/subkey` (`nested=False`: `subkey` alone).  Errors other than `ConversionError`
        (transient, configuration) propagate: the whole input is retried."""

        def start(item: ParsedJob) -> Pending | None:
            if item.job is None:
                return None
            return self.resolver.start(item.job, relative_to, mask)

        for item, pending in prefetch(jobs, start, self.window):
            job_key = key if not item.subkey else f"{key}/{item.subkey}" if nested else item.subkey
            if item.job is None or pending is None:
                assert item.error is not None
                yield item, item.error
                continue
            try:
                inputs = pending.result()
                yield (
                    item,
                    convert_job(item.job, job_key, inputs, self.options, self.limits, files=files),
                )
            except ConversionError as exc:
                yield item, exc

    def convert(
        self, job: Job, key: str, mask_bytes: bytes | None = None, relative_to: str = ""
    ) -> JobOutput:
        """One job through resolve and convert; raises its `ConversionError`."""
        inputs = self.resolver.resolve(job, relative_to, mask_bytes)
        return convert_job(job, key, inputs, self.options, self.limits)


def _parsed(item: Any, pointer: str, limits: Any) -> ParsedJob:
    try:
        return ParsedJob("", parse_job(item, pointer, limits))
    except ConversionError as exc:
        return ParsedJob("", None, exc)
