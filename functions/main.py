"""Cloud Functions (gen2) entry points: `on_upload` (storage trigger) and `api` (HTTP).

Thin by design: they adapt CloudEvents and Flask requests to `shared.service`, which holds
the behaviour.  Configuration is read and checked once per instance, at import, so a bad
configuration (e.g. INPUT_BUCKET == OUTPUT_BUCKET) stops the instance from starting.
"""

from __future__ import annotations

import json

import flask
import functions_framework
from cloudevents.http import CloudEvent

from shared.app import logs
from shared.app.service import Service
from shared.config import Config

logs.configure()
SERVICE = Service.from_config(Config.from_env())


@functions_framework.cloud_event
def on_upload(event: CloudEvent) -> None:
    """Convert the object a `google.cloud.storage.object.v1.finalized` event names."""
    SERVICE.handle_event(event.get_attributes(), event.get_data())


def read_body(request: flask.Request, limit: int, chunk: int = 64 * 1024) -> bytes | None:
    """The body, read in chunks and abandoned past `limit` bytes (None): a chunked body
    has no length to check up front, and reading it whole first is the memory attack."""
    if request.content_length is not None and request.content_length > limit:
        return None
    parts: list[bytes] = []
    total = 0
    while True:
        part = request.stream.read(chunk)
        if not part:
            return b"".join(parts)
        total += len(part)
        if total > limit:
            return None
        parts.append(part)


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    """`POST /convert` (export in, COCO out) and `POST /process` (re-run the trigger)."""
    body = read_body(request, SERVICE.config.limits.max_json_bytes)
    status, answer = SERVICE.handle_http(request.method, request.path, request.content_type, body)
    payload = json.dumps(answer, sort_keys=True)
    if body is None:
        # The rest of the body is never read: functions-framework reads the whole request
        # after a plain response (its `read_request` hook) but not after a streamed one.
        response = flask.Response(iter([payload]), status=status, mimetype="application/json")
        response.headers["Connection"] = "close"
        return response
    return flask.Response(payload, status=status, mimetype="application/json")
