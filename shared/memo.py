"""Memoisation for the parsers' hot paths, bounded by what a key may hold."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Tuples longer than this are computed, not cached: an entry holds its key, and an export
# must not be able to park thousands of 20,000-name tuples in a warm instance.
LONGEST_KEY = 64


def short_key_cache(
    maxsize: int,
) -> Callable[[Callable[[tuple[Any, ...]], T]], Callable[[tuple[Any, ...]], T]]:
    """`functools.lru_cache(maxsize)` for a function of one tuple, for tuples of at most
    `LONGEST_KEY` items; longer ones go to the function itself."""

    def wrap(function: Callable[[tuple[Any, ...]], T]) -> Callable[[tuple[Any, ...]], T]:
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def lookup(key: tuple[Any, ...]) -> T:
            return cached(key) if len(key) <= LONGEST_KEY else function(key)

        return lookup

    return wrap
