"""What the cloud functions do, free of any web framework: events and requests in,
outcomes and (status, body) out.  `functions/main.py` only adapts types."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import Config
from .errors import ConversionError, TooLargeError, TransientError
from .logs import log
from .pipeline import Outcome, Pipeline, SourceRef
from .runtime import build_converter
from .storage import GcsStore, ObjectStore

FINALIZED = "google.cloud.storage.object.v1.finalized"
JSON_TYPES = {"application/json", "application/x-ndjson", "application/jsonl", "text/plain"}

Response = tuple[int, dict[str, Any]]


class ConfigurationError(Exception):
    pass


def validate(config: Config) -> None:
    """Refuse to start on a configuration that would lose data or loop (SPEC §6)."""
    if not config.input_bucket or not config.output_bucket:
        raise ConfigurationError("INPUT_BUCKET and OUTPUT_BUCKET must both be set")
    if config.input_bucket == config.output_bucket:
        raise ConfigurationError(
            f"INPUT_BUCKET and OUTPUT_BUCKET are both {config.input_bucket!r}: outputs would "
            "re-trigger the function; use two buckets"
        )


def _int(value: Any) -> int | None:
    """Storage events carry generation and size as strings."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _age_seconds(timestamp: str | None, now: float) -> float | None:
    if not timestamp:
        return None
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return now - when.timestamp()


def error_body(code: str, message: str, pointer: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "pointer": pointer}}


@dataclass
class Service:
    config: Config
    source: ObjectStore
    out: ObjectStore
    pipeline: Pipeline

    @classmethod
    def from_config(cls, config: Config) -> Service:
        validate(config)
        source, out = GcsStore(config.input_bucket), GcsStore(config.output_bucket)
        return cls(config, source, out, Pipeline(source, out, build_converter(config, out)))

    # -- storage trigger -----------------------------------------------------------------

    def handle_event(
        self,
        attributes: Mapping[str, Any],
        data: Mapping[str, Any] | None,
        now: float | None = None,
    ) -> Outcome:
        started = time.monotonic()
        now = time.time() if now is None else now
        data = data or {}
        fields = {
            "event_id": attributes.get("id"),
            "bucket": data.get("bucket"),
            "object": data.get("name"),
            "generation": data.get("generation"),
        }
        outcome = self._event_outcome(attributes, data, now)
        severity = {"failed": "ERROR", "partial": "WARNING"}.get(outcome.status, "INFO")
        message = f"{outcome.status}: {data.get('name')}"
        if outcome.reason:
            message += f" ({outcome.reason})"
        errors = [e["error"] for e in outcome.errors] or None
        log(
            severity,
            message,
            outcome=outcome.status,
            key=outcome.key,
            errors=errors,
            outputs=len(outcome.outputs),
            duration_ms=round((time.monotonic() - started) * 1000),
            **fields,
        )
        return outcome

    def _event_outcome(
        self, attributes: Mapping[str, Any], data: Mapping[str, Any], now: float
    ) -> Outcome:
        name = str(data.get("name") or "")
        if attributes.get("type") != FINALIZED:
            return Outcome("skipped", name, f"event type {attributes.get('type')} is not handled")
        if data.get("bucket") != self.config.input_bucket:
            return Outcome("skipped", name, f"bucket {data.get('bucket')} is not INPUT_BUCKET")
        age = _age_seconds(attributes.get("time") or data.get("timeCreated"), now)
        if age is not None and age > self.config.max_event_age_s:
            return Outcome(
                "skipped",
                name,
                f"stale event: {age:.0f}s old, limit {self.config.max_event_age_s}s",
            )
        ref = SourceRef(
            str(data["bucket"]),
            name,
            _int(data.get("generation")),
            _int(data.get("size")),
            dict(data.get("metadata") or {}),
        )
        try:
            return self.pipeline.process(ref)
        except TransientError as exc:
            log(
                "ERROR",
                f"transient failure, the platform will retry: {exc}",
                event_id=attributes.get("id"),
                object=name,
                outcome="retry",
            )
            raise

    # -- HTTP --------------------------------------------------------------------------

    def handle_http(
        self, method: str, path: str, content_type: str | None, body: bytes
    ) -> Response:
        route = path.rstrip("/") or "/"
        if route not in {"/convert", "/process"}:
            return 404, error_body("not_found", f"no route {path}; use POST /convert or /process")
        if method != "POST":
            return 405, error_body("method_not_allowed", "use POST")
        media = (content_type or "").split(";")[0].strip().lower()
        if media not in JSON_TYPES:
            return 415, error_body(
                "unsupported_media_type", f"send application/json, not {media or 'nothing'}"
            )
        limit = self.config.limits.max_json_bytes
        if len(body) > limit:
            return 413, error_body("body_too_large", f"body is {len(body)} bytes, limit {limit}")
        try:
            if route == "/convert":
                return self._convert(body, media)
            return self._process(body)
        except TooLargeError as exc:
            return 413, {"error": exc.as_dict()}
        except ConversionError as exc:
            status = (
                400 if exc.code in {"invalid_json", "invalid_encoding", "json_too_deep"} else 422
            )
            return status, {"error": exc.as_dict()}

    def _convert(self, body: bytes, media: str) -> Response:
        converter = self.pipeline.converter
        name = "body.jsonl" if "ndjson" in media or "jsonl" in media else "body.json"
        parsed = converter.parse(converter.load(body, name))
        results: list[dict[str, Any]] = []
        for item in parsed:
            key = item.subkey or "body"
            try:
                if item.error is not None:
                    raise item.error
                assert item.job is not None
                results.append({"key": key, "coco": converter.convert(item.job, key).coco})
            except ConversionError as exc:
                if len(parsed) == 1:
                    raise
                results.append({"key": key, "error": exc.as_dict()})
        if len(parsed) == 1:
            return 200, results[0]["coco"]
        return 200, {"jobs": results}

    def _process(self, body: bytes) -> Response:
        converter = self.pipeline.converter
        request = converter.load(body, "request.json")
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("name"), str)
            or not isinstance(request.get("bucket"), str)
        ):
            return 400, error_body("invalid_request", 'send {"bucket", "name", "generation"?}')
        if request["bucket"] != self.config.input_bucket:
            return 403, error_body(
                "bucket_not_allowed",
                f"only the input bucket {self.config.input_bucket} is processed",
                "/bucket",
            )
        info = self.source.stat(request["name"])
        if info is None:
            return 404, error_body("not_found", f"no object {request['name']}", "/name")
        generation = _int(request.get("generation")) or info.generation
        outcome = self.pipeline.process(
            SourceRef(request["bucket"], request["name"], generation, info.size, info.metadata)
        )
        return 200, {
            "status": outcome.status,
            "key": outcome.key,
            "reason": outcome.reason,
            "outputs": outcome.outputs,
            "errors": outcome.errors,
            "report": outcome.report,
        }
