"""Backfills: every export under a prefix not yet converted at its live generation, as one
Cloud Task each (or on a local pool).

    list INPUT/PREFIX ─► skip what is not an export, and what is converted at its live
    generation (its report or error names that generation) ─► one task per export, named
    by (bucket, name, generation) ─► the HTTP function's POST /process converts it

Bounded (at most `limit` tasks a run) and resumable: a rerun lists again, skips what its
predecessor converted, and the names of tasks still queued make enqueuing them again a
no-op.  No task enqueues another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shared.app.pipeline import Outcome, Pipeline, SourceRef, skip_reason
from shared.io.queue import TaskQueue, task_id
from shared.io.storage import ObjectStore

PROCESS_ROUTE = "/process"


@dataclass
class BackfillResult:
    listed: int = 0
    current: int = 0  # converted at their live generation already
    not_exports: int = 0
    enqueued: int = 0
    deduplicated: int = 0  # a task of that name was queued already
    converted: dict[str, int] = field(default_factory=dict)  # --local: outcome -> count
    left: int = 0  # past the limit: the next run takes them

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items()}


def pending(
    source: ObjectStore,
    pipeline: Pipeline,
    prefix: str,
    result: BackfillResult,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Iterator[SourceRef]:
    """The exports under `prefix` whose outputs are not of their live generation."""
    names = source.list(prefix)
    for done, name in enumerate(names, start=1):
        progress(done, len(names))
        result.listed += 1
        if skip_reason(name) is not None:
            result.not_exports += 1
            continue
        info = source.stat(name)
        if info is None:
            continue  # deleted since the listing
        if skip_reason(name, info.metadata) is not None or not info.size:
            result.not_exports += 1
            continue
        ref = SourceRef(source.bucket, name, info.generation, info.size, info.metadata)
        if pipeline.is_current(ref):
            result.current += 1
            continue
        yield ref


def task_for(ref: SourceRef) -> tuple[str, dict[str, object]]:
    """The task converting one export generation: its name and body."""
    body: dict[str, object] = {"bucket": ref.bucket, "name": ref.name, "generation": ref.generation}
    return task_id("convert", ref.bucket, ref.name, ref.generation), body


def enqueue(
    refs: Iterator[SourceRef], queue: TaskQueue, limit: int, result: BackfillResult
) -> BackfillResult:
    for ref in refs:
        if result.enqueued + result.deduplicated >= limit:
            result.left += 1
            continue
        name, body = task_for(ref)
        if queue.enqueue(name, PROCESS_ROUTE, body):
            result.enqueued += 1
        else:
            result.deduplicated += 1
    return result


def run_locally(
    refs: Iterator[SourceRef],
    pipelines: Callable[[], Pipeline],
    workers: int,
    limit: int,
    result: BackfillResult,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> BackfillResult:
    """The same work on `workers` threads, a pipeline each (a pipeline converts one input
    at a time: its id cache is per input)."""
    local = threading.local()
    lock = threading.Lock()

    def convert(ref: SourceRef) -> Outcome:
        if not hasattr(local, "pipeline"):
            local.pipeline = pipelines()
        outcome: Outcome = local.pipeline.process(ref)
        return outcome

    chosen: list[SourceRef] = []
    for ref in refs:
        if len(chosen) >= limit:
            result.left += 1
            continue
        chosen.append(ref)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="gtcoco-backfill") as pool:
        for outcome in pool.map(convert, chosen):
            with lock:
                result.converted[outcome.status] = result.converted.get(outcome.status, 0) + 1
            on_outcome(outcome)
    return result
