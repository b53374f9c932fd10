"""The one retry schedule for contention (the registry's compare-and-swap, a busy lease):
exponential backoff with full jitter, so racing writers spread out instead of colliding
again in lock-step.  Transport retries of storage calls are the storage client's own
`Retry`, which follows the same shape (see `shared.io.storage`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    attempts: int = 50
    initial_s: float = 0.02
    maximum_s: float = 1.0
    multiplier: float = 2.0

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """The pause before each retry: uniform in [0, ceiling), the ceiling doubling."""
        ceiling = self.initial_s
        for _ in range(self.attempts - 1):
            yield rng() * ceiling
            ceiling = min(self.maximum_s, ceiling * self.multiplier)


def attempts(
    backoff: Backoff,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> Iterator[int]:
    """Attempt numbers 0, 1, ...; sleeps the jittered pause before every one but the first.
    The caller `break`s (or returns) on success and handles exhaustion after the loop."""
    yield 0
    for number, pause in enumerate(backoff.delays(rng), start=1):
        sleep(pause)
        yield number
