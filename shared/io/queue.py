"""Backfill tasks on Cloud Tasks (the client itself comes from the storage adapter, the one
`google.cloud` importer).

A task is one HTTP request to the HTTP function, authenticated with an OIDC token of the
task-invoker account, which alone may invoke it.  Its name is derived from the work it
names, so enqueuing the same work twice is one task (Cloud Tasks refuses a repeated name
while the task exists and for about an hour after it ran).  Nothing here enqueues itself:
the work a task does is fixed when it is created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.io.storage import create_task, tasks_client


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
    # Past it, Cloud Tasks counts the attempt as failed and tries again: no shorter than
    # the function may run, or a long task would run twice at once.
    deadline_s: int = 300


class CloudTasksQueue:
    def __init__(self, target: QueueTarget, client: Any = None) -> None:
        self.target = target
        self._client = client  # None: the process's client, made on first use

    def enqueue(self, name: str, route: str, body: Mapping[str, Any]) -> bool:
        task = {
            "name": f"{self.target.queue}/tasks/{name}",
            "dispatch_deadline": {"seconds": self.target.deadline_s},
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
        return create_task(self._client or tasks_client(), self.target.queue, task)
