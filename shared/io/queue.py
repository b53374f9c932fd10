"""The Cloud Tasks adapter (with the storage adapter, the only `google.cloud` importers).

A task is one HTTP request to the HTTP function, authenticated with an OIDC token of the
task-invoker account, which alone may invoke it.  Its name is derived from the work it
names, so enqueuing the same work twice is one task (Cloud Tasks refuses a repeated name
while the task exists and for about an hour after it ran).  Nothing here enqueues itself:
the work a task does is fixed when it is created.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import ConfigurationError, TransientError

EMULATOR_ENV = "CLOUD_TASKS_EMULATOR_HOST"  # host:port of gcloud-tasks-emulator (tests)


def task_id(kind: str, *parts: object) -> str:
    """A task name for one piece of work: the same work, the same name."""
    digest = hashlib.sha256(json.dumps([kind, *parts], default=str).encode()).hexdigest()
    return f"{kind}-{digest[:40]}"


class TaskQueue(Protocol):
    def enqueue(self, name: str, route: str, body: Mapping[str, Any]) -> bool:
        """Create the task; False when a task of that name exists already (deduplicated)."""
        ...


@dataclass(frozen=True)
class QueueTarget:
    """Where tasks go: the queue, the HTTP function's URL, and the account whose OIDC
    token each task carries (audience: the function's URL)."""

    queue: str  # projects/P/locations/L/queues/Q
    url: str
    service_account: str


class CloudTasksQueue:
    def __init__(self, target: QueueTarget, client: Any = None) -> None:
        self.target = target
        self._client = client

    def _tasks(self) -> Any:
        if self._client is None:
            from google.cloud import tasks_v2

            emulator = os.environ.get(EMULATOR_ENV)
            if emulator:
                import grpc
                from google.cloud.tasks_v2.services.cloud_tasks.transports import (
                    CloudTasksGrpcTransport,
                )

                channel = grpc.insecure_channel(emulator)
                self._client = tasks_v2.CloudTasksClient(
                    transport=CloudTasksGrpcTransport(channel=channel)
                )
            else:
                self._client = tasks_v2.CloudTasksClient()
        return self._client

    def enqueue(self, name: str, route: str, body: Mapping[str, Any]) -> bool:
        from google.api_core import exceptions

        task = {
            "name": f"{self.target.queue}/tasks/{name}",
            "http_request": {
                "http_method": "POST",
                "url": self.target.url.rstrip("/") + route,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps(body, sort_keys=True).encode(),
                "oidc_token": {
                    "service_account_email": self.target.service_account,
                    "audience": self.target.url.rstrip("/"),
                },
            },
        }
        try:
            self._tasks().create_task(parent=self.target.queue, task=task)
        except exceptions.AlreadyExists:
            return False
        except (exceptions.PermissionDenied, exceptions.NotFound) as exc:
            raise ConfigurationError(f"Cloud Tasks refused the queue: {exc}") from exc
        except (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded) as exc:
            raise TransientError(f"Cloud Tasks: {exc}") from exc
        return True
