"""Fan-out of big batches on Cloud Tasks: what a shard is, its names, its task, and how the
shards' records merge into the one batch report.  Pure: the pipeline does the IO.

    event ─► fan-out, under the input's lease: fanout.json (the plan, which also holds the
             input against other generations), old report or error deleted, one task a shard
    task i ─► POST /shard ─► jobs [i·size, (i+1)·size) converted ─► shards/<i>.json
    the shard that finds every record of its generation, under the input's lease:
             stale files removed ─► report.json (does-not-exist precondition) ─► records,
             fanout.json removed

A shard's jobs, names and report entries are those a single run gives them (folders are
named over the whole batch), so the merged report and every file are byte for byte the
single run's.  Each task names exactly its own work (bucket, object, generation, shard):
no task enqueues another, and the same shard enqueued twice is one task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.io.queue import task_id

SHARD_ROUTE = "/shard"
FANOUT = "fanout.json"
SHARDS = "shards"


def shard_ranges(jobs: int, size: int) -> list[range]:
    """The job positions of each shard: `size` jobs each, the last one the rest."""
    if size < 1:
        raise ValueError(f"a shard holds at least one job, not {size}")
    return [range(start, min(start + size, jobs)) for start in range(0, jobs, size)]


def record_name(index: int) -> str:
    """A finished shard's record, relative to the batch's prefix."""
    return f"{SHARDS}/{index:06d}.json"


def lock_name(index: int) -> str:
    """The lease one shard's writer holds, relative to the batch's prefix."""
    return f"{SHARDS}/{index:06d}.lock"


def shard_task(bucket: str, name: str, generation: int, index: int) -> tuple[str, dict[str, Any]]:
    """The task converting shard `index` of one export generation: its name and body.  The
    body names no job range: the shard reads it from the fan-out's plan, so a request can
    only ask for a shard the plan has."""
    body: dict[str, Any] = {
        "bucket": bucket,
        "name": name,
        "generation": str(generation),
        "shard": index,
    }
    return task_id("shard", bucket, name, generation, index), body


def plan_document(
    key: str, sources: list[dict[str, Any]], jobs: int, size: int, expires: float
) -> dict[str, Any]:
    return {
        "key": key,
        "sources": sources,
        "jobs": jobs,
        "shard_jobs": size,
        "shards": len(shard_ranges(jobs, size)),
        "expires": round(expires, 3),
    }


def plan_ranges(plan: Mapping[str, Any]) -> list[range] | None:
    """The shards of a fan-out plan, or None for a plan gtcoco did not write."""
    jobs, size = plan.get("jobs"), plan.get("shard_jobs")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (jobs, size)):
        return None
    assert isinstance(jobs, int) and isinstance(size, int)
    if jobs < 0 or size < 1:
        return None
    return shard_ranges(jobs, size)


def batch_status(jobs: Sequence[Mapping[str, Any]]) -> str:
    """A batch's status from its jobs' entries: as a single run says it."""
    failed = sum(1 for job in jobs if job.get("status") == "failed")
    return "converted" if not failed else ("partial" if failed < len(jobs) else "failed")


def merged_report(base: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The batch report from its shards' records (in shard order): `base` holds the report's
    other fields (converter, key, prefix, source, sources)."""
    jobs = [job for record in records for job in record.get("jobs", [])]
    outputs = sorted(name for record in records for name in record.get("outputs", []))
    return {
        "converter": base["converter"],
        "key": base["key"],
        "prefix": base["prefix"],
        "status": batch_status(jobs),
        "source": base["source"],
        "sources": base["sources"],
        "jobs": jobs,
        "outputs": outputs,
    }
