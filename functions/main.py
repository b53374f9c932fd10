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

from shared.config import Config
from shared.service import Service

SERVICE = Service.from_config(Config.from_env())


@functions_framework.cloud_event
def on_upload(event: CloudEvent) -> None:
    """Convert the object a `google.cloud.storage.object.v1.finalized` event names."""
    SERVICE.handle_event(event.get_attributes(), event.get_data())


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    """`POST /convert` (export in, COCO out) and `POST /process` (re-run the trigger)."""
    status, body = SERVICE.handle_http(
        request.method, request.path, request.content_type, request.get_data(cache=False)
    )
    return flask.Response(
        json.dumps(body, sort_keys=True), status=status, mimetype="application/json"
    )
