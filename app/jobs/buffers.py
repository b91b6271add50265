"""The one buffer every delivery path keeps for a subscriber that is behind.

A subscriber that reads slower than jobs change is owed where each job is now, not
every step on the way: past a point, each job's latest state replaces its earlier
ones, and goes after the other jobs' (so each job's states stay in order, and the
jobs in the order of their latest changes). Past `limit` different jobs waiting, it
has overflowed: better a clear error and a fresh start than a list that is wrong.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from app import metrics

T = TypeVar("T")

# States a subscriber may have waiting before it is told it fell behind.
BACKLOG_LIMIT = 64


class Backlog(Generic[T]):
    """States waiting for one subscriber, by job, bounded.

    `keep_all`: up to this many waiting, every state is kept (a subscriber a little
    behind still sees each step); past it, only each job's latest. 0 keeps only the
    latest from the start.
    """

    __slots__ = ("_items", "_keep_all", "limit", "overflowed")

    def __init__(self, limit: int = BACKLOG_LIMIT, keep_all: int = 0) -> None:
        self.limit = limit
        self._keep_all = keep_all
        self._items: deque[tuple[Hashable, T]] = deque()
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, job: Hashable, state: T) -> bool:
        """Keep `state` as `job`'s; False once more than `limit` jobs wait."""
        if self.overflowed:
            return False
        self._items.append((job, state))
        if len(self._items) > self._keep_all:
            latest: dict[Hashable, T] = {}
            for key, item in self._items:
                latest.pop(key, None)
                latest[key] = item
            if len(latest) < len(self._items):
                metrics.EVENTS_CONFLATED.inc(len(self._items) - len(latest))
            self._items = deque(latest.items())
            if len(self._items) > self.limit:
                self.overflow()
        return not self.overflowed

    def pop(self) -> T:
        """The state waiting longest (IndexError if none is)."""
        return self._items.popleft()[1]

    def overflow(self) -> None:
        """Drop what waits; nothing more is kept."""
        self._items.clear()
        self.overflowed = True

    def clear(self) -> None:
        self._items.clear()
