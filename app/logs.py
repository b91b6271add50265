"""Log a repeating condition once in a while rather than every time it happens.

An outage (database, broker, change feed) or a flood of refused connections would
otherwise write one line per failed request or event.
"""

from __future__ import annotations

import time


class Throttle:
    """`ready(key)` is true at most once per `every` seconds for each key."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def ready(self, key: str = "") -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        self._last[key] = now
        return True
