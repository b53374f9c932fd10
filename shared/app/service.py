"""What the cloud functions do, free of any web framework: events and requests in,
outcomes and (status, body) out.  `functions/main.py` only adapts types."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.app import assemble_shards as shards
from shared.app.assemble import Assembler, Source
from shared.app.assemble import Result as AssemblyResult
from shared.app.backfill import BackfillResult, enqueue, pending
from shared.app.logs import fields as log_fields
from shared.app.pipeline import Outcome, Pipeline, SourceRef
from shared.app.runtime import build_assembler, build_pipeline, build_queue
from shared.app.shards import SHARD_ROUTE
from shared.coco.dataset import parse_splits
from shared.config import Config
from shared.errors import ConfigurationError, ConversionError, GtcocoError, TransientError
from shared.io.queue import TaskQueue
from shared.io.storage import AccessDenied, GcsStore, ObjectStore, PrefixStore

FINALIZED = "google.cloud.storage.object.v1.finalized"
JSON_TYPES = {"application/json", "application/x-ndjson", "application/jsonl", "text/plain"}
# Object generations and sizes are int64 in Cloud Storage; anything else is not an object.
_MAX_INT64 = 2**63 - 1

Response = tuple[int, dict[str, Any]]
log = logging.getLogger("gtcoco")

__all__ = ["ConfigurationError", "Service", "validate"]


def validate(config: Config) -> None:
    """Refuse to start on a configuration that would lose data or loop (SPEC §6)."""
    if not config.input_bucket or not config.output_bucket:
        raise ConfigurationError("INPUT_BUCKET and OUTPUT_BUCKET must both be set")
    if config.input_bucket == config.output_bucket:
        raise ConfigurationError(
            f"INPUT_BUCKET and OUTPUT_BUCKET are both {config.input_bucket!r}: outputs would "
            "re-trigger the function; use two buckets"
        )


class MalformedEvent(Exception):
    pass


def _count(value: Any, what: str) -> int | None:
    """A generation or size: storage events carry them as decimal strings (int64)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MalformedEvent(f"{what} must be a decimal string, got {type(value).__name__}")
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 19):
        raise MalformedEvent(f"{what} {value[:30]!r} is not a decimal int64")
    number = int(value)
    if not 0 <= number <= _MAX_INT64:
        raise MalformedEvent(f"{what} {number} is out of the int64 range")
    return number


def event_ref(data: Any) -> SourceRef:
    """The object a finalized event names, or `MalformedEvent` saying what is wrong."""
    if not isinstance(data, Mapping):
        raise MalformedEvent(f"event data is {type(data).__name__}, not an object")
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str) or not bucket:
        raise MalformedEvent("event data has no bucket string")
    if not isinstance(name, str) or not name:
        raise MalformedEvent("event data has no name string")
    metadata = data.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    return SourceRef(
        bucket,
        name,
        _count(data.get("generation"), "generation"),
        _count(data.get("size"), "size"),
        {str(k): str(v) for k, v in metadata.items()},
    )


def _age_seconds(timestamp: Any, now: float) -> float | None:
    if not timestamp or not isinstance(timestamp, str):
        return None
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return now - when.timestamp()


ROUTES = frozenset(
    {
        "/convert",
        "/process",
        "/backfill",
        "/assemble",
        SHARD_ROUTE,
        shards.MAP_ROUTE,
        shards.REDUCE_ROUTE,
    }
)
DATASET_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")


def error_body(code: str, message: str, pointer: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "pointer": pointer}}


def log_outcome(outcome: Outcome, name: object, started: float, fields: Mapping[str, Any]) -> None:
    """One line per converted input, whichever entry point converted it."""
    level = {"failed": logging.ERROR, "partial": logging.WARNING}.get(outcome.status, logging.INFO)
    message = f"{outcome.status}: {name}"
    if outcome.reason:
        message += f" ({outcome.reason})"
    errors = [e["error"] for e in outcome.errors] or None
    log.log(
        level,
        message,
        extra=log_fields(
            outcome=outcome.status,
            key=outcome.key,
            errors=errors,
            # One label for log-based metrics (infra/monitoring.tf): the first error's code.
            error_code=errors[0].get("code") if errors else None,
            outputs=len(outcome.outputs),
            duration_ms=round((time.monotonic() - started) * 1000),
            **fields,
        ),
    )


@dataclass
class Service:
    config: Config
    source: ObjectStore
    out: ObjectStore
    pipeline: Pipeline
    queue: TaskQueue | None = None  # backfills and shards; None: not configured

    @classmethod
    def from_config(cls, config: Config) -> Service:
        validate(config)
        deadline = config.storage_retry_deadline_s
        source = GcsStore(config.input_bucket, retry_deadline_s=deadline)
        out = GcsStore(config.output_bucket, retry_deadline_s=deadline)
        queue = build_queue(config)
        return cls(config, source, out, build_pipeline(config, source, out, queue), queue)

    # -- storage trigger -----------------------------------------------------------------

    def handle_event(
        self,
        attributes: Mapping[str, Any],
        data: Any,
        now: float | None = None,
    ) -> Outcome:
        started = time.monotonic()
        now = time.time() if now is None else now
        data = data if data is not None else {}
        view = data if isinstance(data, Mapping) else {}
        fields = {
            "event_id": attributes.get("id"),
            "bucket": view.get("bucket"),
            "object": view.get("name"),
            "generation": view.get("generation"),
        }
        outcome = self._event_outcome(attributes, data, now)
        log_outcome(outcome, view.get("name"), started, fields)
        return outcome

    def _event_outcome(self, attributes: Mapping[str, Any], data: Any, now: float) -> Outcome:
        if attributes.get("type") != FINALIZED:
            return Outcome("skipped", "", f"event type {attributes.get('type')} is not handled")
        try:
            ref = event_ref(data)
        except MalformedEvent as exc:
            # Not an object at all: retrying it can only fail the same way.
            return Outcome("skipped", "", f"malformed event: {exc}")
        name = ref.name
        if ref.bucket != self.config.input_bucket:
            return Outcome("skipped", name, f"bucket {ref.bucket} is not INPUT_BUCKET")
        age = _age_seconds(attributes.get("time") or data.get("timeCreated"), now)
        if age is not None and age > self.config.max_event_age_s:
            return Outcome(
                "skipped",
                name,
                f"stale event: {age:.0f}s old, limit {self.config.max_event_age_s}s",
            )
        try:
            return self.pipeline.process(ref)
        except (TransientError, ConfigurationError) as exc:
            log.error(
                "%s failure, the platform will retry: %s",
                exc.code,
                exc,
                extra=log_fields(
                    event_id=attributes.get("id"), object=name, outcome="retry", error_code=exc.code
                ),
            )
            raise

    # -- HTTP --------------------------------------------------------------------------

    def handle_http(
        self, method: str, path: str, content_type: str | None, body: bytes | None
    ) -> Response:
        """`body` None: the edge stopped reading it past `max_json_bytes` (413)."""
        route = path.rstrip("/") or "/"
        if route not in ROUTES:
            return 404, error_body(
                "not_found", f"no route {path}; use POST {', '.join(sorted(ROUTES))}"
            )
        if method != "POST":
            return 405, error_body("method_not_allowed", "use POST")
        media = (content_type or "").split(";")[0].strip().lower()
        if media not in JSON_TYPES:
            return 415, error_body(
                "unsupported_media_type", f"send application/json, not {media or 'nothing'}"
            )
        limit = self.config.limits.max_json_bytes
        if body is None or len(body) > limit:
            return 413, error_body("body_too_large", f"the body is over the limit of {limit} bytes")
        try:
            if route == "/convert":
                return self._convert(body, media)
            if route == "/backfill":
                return self._backfill(body)
            if route == "/assemble":
                return self._assemble(body)
            if route in {shards.MAP_ROUTE, shards.REDUCE_ROUTE}:
                if self.queue is None:
                    return 501, error_body("queue_not_configured", "tasks need the queue")
                return self._assembly_task(body, route)
            if route == SHARD_ROUTE:
                return self._process(body, shard=True)
            return self._process(body)
        except ConversionError as exc:
            return exc.http_status, {"error": exc.as_dict()}
        except GtcocoError as exc:
            log.error(
                "%s failure answering %s: %s",
                exc.code,
                route,
                exc,
                extra=log_fields(outcome="error", error_code=exc.code),
            )
            return exc.http_status, error_body(exc.code, exc.message)

    def _convert(self, body: bytes, media: str) -> Response:
        """The COCO of each job in the body, through the same stages as the trigger; no mask
        file is encoded, since none is kept."""
        converter = self.pipeline.converter
        name = "body.jsonl" if "ndjson" in media or "jsonl" in media else "body.json"
        document = converter.read(body, name)
        results: list[dict[str, Any]] = []
        for item, result in converter.run(
            converter.parse(document), "body", files=False, nested=False
        ):
            key = item.subkey or "body"
            if isinstance(result, ConversionError):
                if not document.is_batch:
                    raise result
                results.append({"key": key, "error": result.as_dict()})
            else:
                results.append({"key": key, "coco": result.coco})
        if not document.is_batch:
            return 200, results[0]["coco"]
        return 200, {"jobs": results}

    def _backfill(self, body: bytes) -> Response:
        """One Cloud Task per export under `prefix` not converted at its live generation
        (each calls POST /process); `limit` caps the tasks of this call."""
        config = self.config
        queue = self.queue
        if queue is None:
            return 501, error_body(
                "backfill_not_configured",
                "set GTCOCO_TASKS_QUEUE, GTCOCO_TASKS_URL and GTCOCO_TASKS_SERVICE_ACCOUNT",
            )
        request = self.pipeline.converter.read(body, "request.json").doc
        prefix = request.get("prefix", "") if isinstance(request, dict) else None
        limit = request.get("limit", config.backfill_max_tasks) if isinstance(request, dict) else 0
        if not isinstance(prefix, str) or not isinstance(limit, int) or isinstance(limit, bool):
            return 400, error_body("invalid_request", 'send {"prefix": "...", "limit"?: N}')
        result = BackfillResult()
        refs = pending(self.source, self.pipeline, prefix, result)
        enqueue(refs, queue, max(0, min(limit, config.backfill_max_tasks)), result)
        log.info(
            "backfill of %s: %d tasks enqueued",
            prefix or "the bucket",
            result.enqueued,
            extra=log_fields(outcome="backfill", **result.as_dict()),
        )
        return 200, result.as_dict()

    def _assemble(self, body: bytes) -> Response:
        """The outputs under `prefix` of the output bucket -> `datasets/<name>/` there."""
        request = self.pipeline.converter.read(body, "request.json").doc
        if not isinstance(request, dict):
            return 400, error_body("invalid_request", 'send {"prefix", "name", "splits"?}')
        prefix, name = request.get("prefix", ""), request.get("name")
        splits, images = request.get("splits"), request.get("images", "none")
        if not isinstance(prefix, str) or not isinstance(name, str) or not DATASET_NAME.match(name):
            return 400, error_body(
                "invalid_request", 'send {"prefix": "...", "name": "[A-Za-z0-9_-][A-Za-z0-9._-]*"}'
            )
        if splits is not None and not (
            isinstance(splits, dict)
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in splits.values()
            )
        ):
            return 400, error_body("invalid_request", '"splits" is {"train": 0.9, ...}', "/splits")
        if images not in {"none", "copy"}:
            return 400, error_body("invalid_request", '"images" is "none" or "copy"', "/images")
        rule = parse_splits([f"{k}={v}" for k, v in (splits or {}).items()])
        sources = self._dataset_sources(prefix)
        assembler = build_assembler(self.config, PrefixStore(self.out, f"datasets/{name}"))
        listing = assembler.listing(sources)
        if self.queue is not None and listing.total > self.config.assemble_shard_jobs:
            request = {**shards.request_of(sources, rule, images, name), "prefix": prefix}
            made = shards.plan(assembler, listing, request, self.config.assemble_shard_jobs)
            enqueued = sum(
                self.queue.enqueue(*shards.map_task(made, index)) for index in range(made.shards)
            )
            return 202, {
                "dataset": assembler.out.uri(""),
                "plan": made.id,
                "jobs": made.total,
                "shards": made.shards,
                "enqueued": enqueued,
            }
        return 200, self._dataset_answer(
            assembler, assembler.run(sources, rule, images, name, listing)
        )

    def _dataset_sources(self, prefix: str) -> list[Source]:
        source = PrefixStore(self.out, prefix) if prefix.strip("/") else self.out
        return [Source(self.out.uri(prefix), source)]

    @staticmethod
    def _dataset_answer(assembler: Assembler, result: AssemblyResult) -> dict[str, Any]:
        doc = result.dataset
        return {
            "dataset": assembler.out.uri(""),
            "splits": doc["splits"],
            "categories": doc["categories"],
            "images": doc["images"],
        }

    def _assembly_task(self, body: bytes, route: str) -> Response:
        """A map or reduce task of a sharded assembly; a task of a plan that is not the
        dataset's current one (replaced, or finished) does nothing."""
        request = self.pipeline.converter.read(body, "request.json").doc
        name = request.get("name") if isinstance(request, dict) else None
        index = request.get("shard", 0) if isinstance(request, dict) else None
        if (
            not isinstance(name, str)
            or not DATASET_NAME.match(name)
            or not isinstance(index, int)
            or isinstance(index, bool)
        ):
            return 400, error_body("invalid_request", 'send {"name", "plan", "shard"?}')
        assembler = build_assembler(self.config, PrefixStore(self.out, f"datasets/{name}"))
        made = shards.current_plan(assembler.out)
        if made is None or made.id != request.get("plan"):
            return 200, {"status": "skipped", "reason": "not the dataset's current plan"}
        sources = self._dataset_sources(str(made.request.get("prefix", "")))
        if route == shards.REDUCE_ROUTE:
            answer = self._dataset_answer(assembler, shards.reduce_shards(assembler, sources, made))
            return 200, {"status": "assembled", **answer}
        if not 0 <= index < made.shards:
            return 400, error_body("invalid_shard", f"the plan has {made.shards} shards", "/shard")
        if shards.map_shard(assembler, sources, made, index):
            assert self.queue is not None
            self.queue.enqueue(*shards.reduce_task(made))
            return 200, {"status": "mapped", "reduce": "enqueued"}
        return 200, {"status": "mapped"}

    def _process(self, body: bytes, shard: bool = False) -> Response:
        """POST /process: one object converted as the trigger would.  POST /shard (the
        fan-out's tasks): one shard of a batch generation."""
        converter = self.pipeline.converter
        request = converter.read(body, "request.json").doc
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("name"), str)
            or not isinstance(request.get("bucket"), str)
        ):
            return 400, error_body("invalid_request", 'send {"bucket", "name", "generation"?}')
        index = request.get("shard")
        if shard and (
            not isinstance(index, int)
            or isinstance(index, bool)
            or not 0 <= index < 2**31
            or request.get("generation") is None
        ):
            return 400, error_body(
                "invalid_request", 'send {"bucket", "name", "generation", "shard": N}', "/shard"
            )
        if request["bucket"] != self.config.input_bucket:
            return 403, error_body(
                "bucket_not_allowed",
                f"only the input bucket {self.config.input_bucket} is processed",
                "/bucket",
            )
        try:
            info = self.source.stat(request["name"])
        except AccessDenied as exc:  # e.g. a name the storage service cannot hold
            return 400, error_body("invalid_request", f"storage refused the name: {exc}", "/name")
        if info is None:
            return 404, error_body("not_found", f"no object {request['name']}", "/name")
        try:
            generation = _count(request.get("generation"), "generation") or info.generation
        except MalformedEvent as exc:
            return 400, error_body("invalid_request", str(exc), "/generation")
        ref = SourceRef(request["bucket"], request["name"], generation, info.size, info.metadata)
        started = time.monotonic()
        fields: dict[str, object] = {
            "bucket": ref.bucket,
            "object": ref.name,
            "generation": str(generation),
        }
        if shard:
            assert isinstance(index, int)
            outcome = self.pipeline.process_shard(ref, index)
            fields["shard"] = index
        else:
            outcome = self.pipeline.process(ref)
        log_outcome(outcome, ref.name, started, fields)
        return 200, {
            "status": outcome.status,
            "key": outcome.key,
            "prefix": outcome.prefix,
            "reason": outcome.reason,
            "outputs": outcome.outputs,
            "errors": outcome.errors,
            "report": outcome.report,
        }
