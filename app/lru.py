"""A bounded mapping that forgets its least recently used entry first.

For the caches `functools.lru_cache` does not fit: per-instance ones, ones whose
value is computed elsewhere, ones where a read need not count as a use.

It wraps an `OrderedDict` rather than subclassing one: CPython's `OrderedDict`
takes slower generic paths for a subclass (put + evict ~690 ns against ~280 ns).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from enum import Enum
from typing import Final, Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class _Missing(Enum):
    MISSING = 0


# `use(key, MISSING)`: absent, where None may be a value kept (a type checker
# narrows `is MISSING` away).
MISSING: Final = _Missing.MISSING


class LRU(Generic[K, V]):
    __slots__ = ("_entries", "get", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.maxsize = maxsize
        # The value of a key without counting as a use (default None): the dict's own
        # method, not a Python call around it, for the caches read on every event.
        self.get = self._entries.get

    def put(self, key: K, value: V) -> None:
        """Store (or replace) `key` as the most recently used; forget the oldest past `maxsize`."""
        entries = self._entries
        entries[key] = value
        entries.move_to_end(key)
        if len(entries) > self.maxsize:
            entries.popitem(last=False)

    @overload
    def use(self, key: K) -> V | None: ...
    @overload
    def use(self, key: K, default: D) -> V | D: ...
    def use(self, key: K, default: object = None) -> object:
        """The value of `key`, now the most recently used; `default` if absent."""
        entries = self._entries
        try:
            entries.move_to_end(key)
        except KeyError:
            return default
        return entries[key]

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Forget `key`; its value, or `default` if absent."""
        return self._entries.pop(key, default)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        """Keys, least recently used first."""
        return iter(self._entries)
