"""Memoisation for the parsers' hot paths, bounded by what a key may hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Tuples longer than this are computed, not cached: an entry holds its key, and an export
# must not be able to park thousands of 20,000-name tuples in a warm instance.
LONGEST_KEY = 64


class ShortKeyCache(dict[tuple[Any, ...], T], Generic[T]):
    """A function of one tuple, remembered for tuples of at most `LONGEST_KEY` items and at
    most `maxsize` of them (all forgotten at once when full: the keys a job repeats come
    back at once).  A hit is one dict lookup in C: these run once per annotation, where
    `functools.lru_cache` behind a Python wrapper cost a third of a microsecond."""

    def __init__(self, function: Callable[[tuple[Any, ...]], T], maxsize: int) -> None:
        super().__init__()
        self.function, self.maxsize = function, maxsize
        self.__wrapped__ = function
        self.__doc__ = function.__doc__

    __call__ = dict.__getitem__  # a miss goes to __missing__

    def __missing__(self, key: tuple[Any, ...]) -> T:
        found = self.function(key)
        if len(key) <= LONGEST_KEY:
            if len(self) >= self.maxsize:
                self.clear()
            self[key] = found
        return found


def short_key_cache(maxsize: int) -> Callable[[Callable[[tuple[Any, ...]], T]], ShortKeyCache[T]]:
    """Decorate a function of one tuple with a `ShortKeyCache`."""

    def wrap(function: Callable[[tuple[Any, ...]], T]) -> ShortKeyCache[T]:
        return ShortKeyCache(function, maxsize)

    return wrap
