"""The bounded cache: short keys remembered, long ones computed every time."""

from __future__ import annotations

import pytest

from shared.memo import LONGEST_KEY, short_key_cache


def test_only_short_keys_are_cached() -> None:
    calls: list[int] = []

    @short_key_cache(maxsize=8)
    def size(key: tuple[int, ...]) -> int:
        calls.append(len(key))
        return len(key)

    short, long = tuple(range(LONGEST_KEY)), tuple(range(LONGEST_KEY + 1))
    assert [size(short), size(short), size(long), size(long)] == [
        LONGEST_KEY, LONGEST_KEY, LONGEST_KEY + 1, LONGEST_KEY + 1]
    assert calls == [LONGEST_KEY, LONGEST_KEY + 1, LONGEST_KEY + 1]


def test_a_full_cache_starts_again_and_stays_bounded() -> None:
    calls: list[tuple[int, ...]] = []

    @short_key_cache(maxsize=3)
    def first(key: tuple[int, ...]) -> int:
        calls.append(key)
        return key[0]

    keys = [(i,) for i in range(10)]
    assert [first(k) for k in keys] == list(range(10))
    assert len(first) <= 3
    assert first((9,)) == 9 and calls.count((9,)) == 1  # still remembered
    assert first((0,)) == 0 and calls.count((0,)) == 2  # forgotten when the cache filled


def test_an_error_is_not_remembered() -> None:
    calls: list[int] = []

    @short_key_cache(maxsize=8)
    def checked(key: tuple[int, ...]) -> int:
        calls.append(1)
        if not key:
            raise ValueError("empty")
        return len(key)

    for _ in range(2):
        with pytest.raises(ValueError):
            checked(())
    assert len(calls) == 2 and len(checked) == 0
