"""Task names and the Cloud Tasks adapter's answers (the emulator does not keep the names
of tasks it ran, so deduplication is checked here against the client's own exception)."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions
from hypothesis import given
from hypothesis import strategies as st

from shared.app.backfill import task_for
from shared.app.pipeline import SourceRef
from shared.errors import ConfigurationError, TransientError
from shared.io.queue import CloudTasksQueue, QueueTarget, task_id

TARGET = QueueTarget("projects/p/locations/l/queues/q", "https://fn.example/api",
                     "tasks@p.iam.gserviceaccount.com")


@given(st.text(max_size=50), st.text(max_size=200), st.integers(0, 2**63))
def test_a_task_name_is_a_function_of_the_work(bucket: str, name: str, generation: int) -> None:
    first, body = task_for(SourceRef(bucket, name, generation))
    assert task_for(SourceRef(bucket, name, generation))[0] == first
    assert task_for(SourceRef(bucket, name, generation + 1))[0] != first
    assert task_for(SourceRef(bucket, name + "x", generation))[0] != first
    # Cloud Tasks names: letters, digits, hyphens, underscores; at most 500 characters.
    assert len(first) <= 500 and all(c.isalnum() or c in "-_" for c in first)
    assert body == {"bucket": bucket, "name": name, "generation": generation}
    assert task_id("convert", bucket, name, generation) == first


class Client:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create_task(self, parent: str, task: dict[str, Any]) -> None:
        if self.fail is not None:
            raise self.fail
        self.created.append((parent, task))


def test_a_task_carries_the_invoker_token_for_the_function() -> None:
    client = Client()
    assert CloudTasksQueue(TARGET, client).enqueue("convert-1", "/process", {"name": "a"})
    ((parent, task),) = client.created
    assert parent == TARGET.queue and task["name"] == f"{TARGET.queue}/tasks/convert-1"
    request = task["http_request"]
    assert request["url"] == "https://fn.example/api/process" and request["http_method"] == "POST"
    assert request["oidc_token"] == {"service_account_email": TARGET.service_account,
                                     "audience": "https://fn.example/api"}
    assert request["body"] == b'{"name": "a"}'
    assert task["dispatch_deadline"] == {"seconds": TARGET.deadline_s}


@pytest.mark.parametrize(("fail", "outcome"), [
    (exceptions.AlreadyExists("exists"), False),
    (exceptions.PermissionDenied("no"), ConfigurationError),
    (exceptions.NotFound("no queue"), ConfigurationError),
    (exceptions.ServiceUnavailable("later"), TransientError),
])
def test_queue_answers(fail: Exception, outcome: Any) -> None:
    queue = CloudTasksQueue(TARGET, Client(fail))
    if outcome is False:
        assert queue.enqueue("convert-1", "/process", {}) is False  # deduplicated
    else:
        with pytest.raises(outcome):
            queue.enqueue("convert-1", "/process", {})
