"""The sharded form of `assemble`, for datasets too big for one invocation:

    plan   ─► the sources' job reports, listed once, in the dataset's order ─► one names
              file a shard (`_parts/<plan>/<i>.names`) and `_parts/plan.json`
    map i  ─► shard i's jobs read (coco, legend, extras) ─► `_parts/<plan>/<i>.jsonl`
    reduce ─► the parts streamed in shard order through the single-machine `collect` ─►
              the dataset, byte for byte the one `assemble` writes ─► `_parts/` removed

Reading the jobs is what costs (a request per file of every job); the map tasks do it in
parallel.  The reduce is one streaming pass over small records: ids, file names and splits
are given in listing order exactly as in one run, because it is the same code over the
same jobs in the same order.  A plan is named by what it covers (the request and every
report name), so posting the same assembly twice plans the same tasks.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.app.assemble import Assembler, JobData, Listing, Result, Source, ordered
from shared.io.queue import task_id
from shared.io.storage import ObjectStore
from shared.jsonio import dump_json

PARTS = "_parts"
PLAN = f"{PARTS}/plan.json"
MAP_ROUTE, REDUCE_ROUTE = "/assemble/map", "/assemble/reduce"


@dataclass(frozen=True)
class Plan:
    id: str
    request: dict[str, Any]  # prefix, name, splits, images: what the dataset is
    shards: int
    total: int
    failed_jobs: int

    @property
    def folder(self) -> str:
        return f"{PARTS}/{self.id}"

    def names(self, index: int) -> str:
        return f"{self.folder}/{index:06d}.names"

    def part(self, index: int) -> str:
        return f"{self.folder}/{index:06d}.jsonl"

    @classmethod
    def of(cls, doc: Any) -> Plan | None:
        if not isinstance(doc, dict):
            return None
        try:
            return cls(
                str(doc["id"]),
                dict(doc["request"]),
                int(doc["shards"]),
                int(doc["total"]),
                int(doc["failed_jobs"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def job_line(job: JobData | None) -> bytes:
    """A read job as one JSON line (`null`: a report that is not a job's)."""
    if job is None:
        return b"null"
    doc = {
        "source": job.source,
        "key": job.key,
        "inputs": job.inputs,
        "coco": job.coco,
        "folder": job.folder,
        "legend": job.legend,
        "extras": job.extras,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def job_of_line(line: bytes, sources: list[Source]) -> JobData | None:
    doc = json.loads(line)
    if doc is None:
        return None
    store = sources[doc["source"]].store
    return JobData(
        doc["source"],
        doc["key"],
        doc["inputs"],
        doc["coco"],
        store,
        doc["folder"],
        doc["legend"],
        doc["extras"],
    )


def plan(assembler: Assembler, listing: Listing, request: dict[str, Any], shard_jobs: int) -> Plan:
    """Write the plan: the names of each shard's reports, then `plan.json` naming them.
    Parts of an earlier plan of the same dataset are removed first."""
    out = assembler.out
    for old in out.list(PARTS + "/"):
        out.delete(old)
    digest = hashlib.sha256(dump_json(request))
    chunks: list[list[str]] = [[]]
    for source, name in listing.reports():
        if len(chunks[-1]) >= shard_jobs:
            chunks.append([])
        line = f"{source}\t{name}"
        chunks[-1].append(line)
        digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
    if chunks == [[]]:
        chunks = []
    made = Plan(digest.hexdigest()[:32], request, len(chunks), listing.total, listing.failed_jobs)
    for index, chunk in enumerate(chunks):
        out.write(
            made.names(index), "\n".join(chunk).encode("utf-8", "surrogatepass"), "text/plain"
        )
    doc = {
        "id": made.id,
        "request": request,
        "shards": made.shards,
        "total": made.total,
        "failed_jobs": made.failed_jobs,
    }
    out.write(PLAN, dump_json(doc), "application/json")
    return made


def map_task(made: Plan, index: int) -> tuple[str, str, dict[str, Any]]:
    """(task name, route, body) of map task `index`: named by the plan and the shard."""
    name = str(made.request["name"])
    body = {"name": name, "plan": made.id, "shard": index}
    return task_id("assemble-map", name, made.id, index), MAP_ROUTE, body


def reduce_task(made: Plan) -> tuple[str, str, dict[str, Any]]:
    """The plan's one reduce task: every map task that finds the set complete enqueues it,
    and its name makes that one task."""
    name = str(made.request["name"])
    return task_id("assemble-reduce", name, made.id), REDUCE_ROUTE, {"name": name, "plan": made.id}


def current_plan(out: ObjectStore) -> Plan | None:
    found = out.read_if_exists(PLAN)
    return None if found is None else Plan.of(json.loads(found[0]))


def map_shard(assembler: Assembler, sources: list[Source], made: Plan, index: int) -> bool:
    """Read shard `index`'s jobs into its part (unless it is there); whether every part
    of the plan now is."""
    out = assembler.out
    if out.stat(made.part(index)) is None:
        raw = out.read(made.names(index)).decode("utf-8", "surrogatepass")
        items = []
        for line in raw.split("\n") if raw else []:
            source, _, name = line.partition("\t")
            items.append((int(source), sources[int(source)].store, name))
        with tempfile.NamedTemporaryFile(prefix="gtcoco-part-", suffix=".jsonl") as f:
            for job in ordered(assembler.pool, assembler.read_job, items, assembler.window):
                f.write(job_line(job) + b"\n")
            f.flush()
            out.write_file(made.part(index), Path(f.name), "application/x-ndjson")
    return complete(out, made)


def complete(out: ObjectStore, made: Plan) -> bool:
    present = set(out.list(made.folder + "/", (".jsonl",)))
    return all(made.part(i) in present for i in range(made.shards))


def reduce_shards(assembler: Assembler, sources: list[Source], made: Plan) -> Result:
    """The dataset from the parts, then the parts removed."""
    out = assembler.out

    def jobs() -> Iterator[JobData | None]:
        for index in range(made.shards):
            for line in out.read(made.part(index)).splitlines():
                if line:
                    yield job_of_line(line, sources)

    request = made.request
    splits = tuple((str(n), float(f)) for n, f in request["splits"])
    result = assembler.collect(
        sources,
        jobs(),
        made.total,
        made.failed_jobs,
        splits,
        str(request["images"]),
        str(request["name"]),
    )
    for name in out.list(PARTS + "/"):
        out.delete(name)
    return result


def request_of(
    sources: list[Source], splits: tuple[tuple[str, float], ...], images: str, name: str
) -> dict[str, Any]:
    return {
        "sources": [s.uri for s in sources],
        "splits": [[n, f] for n, f in splits],
        "images": images,
        "name": name,
    }


def run_in_shards(
    assembler: Assembler,
    sources: list[Source],
    splits: tuple[tuple[str, float], ...],
    images: str,
    name: str,
    shard_jobs: int,
) -> Result:
    """Plan, map every shard, reduce, in this process: what the tasks do, one by one."""
    made = plan(
        assembler, assembler.listing(sources), request_of(sources, splits, images, name), shard_jobs
    )
    for index in range(made.shards):
        map_shard(assembler, sources, made, index)
    return reduce_shards(assembler, sources, made)
