from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.retry import Backoff, attempts


@given(st.integers(1, 30), st.floats(0, 0.999))
def test_pauses_are_jittered_under_a_doubling_capped_ceiling(n: int, r: float) -> None:
    backoff = Backoff(attempts=n, initial_s=0.1, maximum_s=1.0)
    pauses = list(backoff.delays(lambda: r))
    assert len(pauses) == n - 1
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(n - 1)]
    assert pauses == [r * c for c in ceilings]


def test_attempts_sleep_between_tries_not_before_the_first() -> None:
    slept: list[float] = []
    tries = list(attempts(Backoff(attempts=4, initial_s=1, maximum_s=8), slept.append, lambda: 0.5))
    assert tries == [0, 1, 2, 3]
    assert slept == [0.5, 1.0, 2.0]
