"""The bounded cache: short keys remembered, long ones computed every time."""

from __future__ import annotations

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
