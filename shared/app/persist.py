"""The persist stage: concurrent writes on the IO pool, each group's last file (a job's
report) written only once the rest of its group is stored.

`Writer` bounds the writes in flight (memory: that many files), records what was stored
(the pipeline deletes everything else under the input's prefix), and raises the first
failure at `drain`, after every write in flight has ended, so no write of this run is
still going when the caller decides what the prefix holds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from shared.io.storage import ObjectStore, content_type_for

File = tuple[str, bytes]


class Writer:
    def __init__(self, store: ObjectStore, pool: ThreadPoolExecutor, in_flight: int) -> None:
        self.store, self.pool = store, pool
        self.written: set[str] = set()
        self._slots = threading.BoundedSemaphore(max(1, in_flight))
        self._lock = threading.Condition()
        self._running = 0
        self._error: BaseException | None = None

    def group(self, files: Sequence[File], last: File | None = None) -> None:
        """Write `files` concurrently, then `last` once all of them are stored."""
        self.check()
        if not files:
            if last is not None:
                self._submit(last, None, slot=True)
            return
        left = [len(files)]

        def done(ok: bool) -> None:
            with self._lock:
                left[0] -= 1
                ready = left[0] == 0 and ok and self._error is None
            if ready and last is not None:
                # No slot: waiting for one here could hold every worker while the slots
                # belong to writes queued behind them.
                self._submit(last, None, slot=False)

        for file in files:
            self._submit(file, done, slot=True)

    def _submit(self, file: File, then: object, slot: bool) -> None:
        if slot:
            self._slots.acquire()
        with self._lock:
            self._running += 1
        future = self.pool.submit(self._write, *file)

        def finished(f: Future[None]) -> None:
            error = f.exception()
            with self._lock:
                if error is not None and self._error is None:
                    self._error = error
                elif error is None:
                    self.written.add(file[0])
            if callable(then):
                then(error is None)
            if slot:
                self._slots.release()
            with self._lock:
                self._running -= 1
                self._lock.notify_all()

        future.add_done_callback(finished)

    def _write(self, name: str, data: bytes) -> None:
        self.store.write(name, data, content_type_for(name))

    def check(self) -> None:
        """Stop early: raise the first failure so far (after `drain`)."""
        if self._error is not None:
            self.drain()

    def drain(self) -> None:
        """Wait for every write in flight; raise the first failure, if any."""
        with self._lock:
            self._lock.wait_for(lambda: self._running == 0)
            error = self._error
        if error is not None:
            raise error
