"""Memory back once a wave of subscribers has gone: a full collection, then freed heap returned.

With `app.main.GC_THRESHOLDS` a full collection comes minutes apart under load, and
what ended connections and subscriptions leave in reference cycles (uvicorn's
WebSocket protocol objects, graphql-core's per-operation state: ~45 MiB per 1,000
subscribers, see `drills/soak.py`) waits that long to be freed, so each wave added to
the last. Once no subscription is left a full collection is cheap (no live
subscription to traverse): `IdleCollection` runs one then, and asks glibc to hand
the freed heap back to the system, which it otherwise keeps for the process.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Callable

logger = logging.getLogger("app")

# Subscriptions that must have ended since the last collection for the next one: a
# lone client coming and going does not set off a full collection each time.
IDLE_COLLECT_AFTER = 100


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc only
    except (AttributeError, OSError):
        return None
    return trim


class IdleCollection:
    """Told by `JobEvents` that no subscription is left, and how many ended since."""

    def __init__(self, after: int = IDLE_COLLECT_AFTER) -> None:
        self.after = after
        self.ended = 0
        self._trim = _malloc_trim()

    def __call__(self, ended: int) -> None:
        self.ended += ended
        if self.ended < self.after:
            return
        started = time.perf_counter()
        found = gc.collect()
        if self._trim is not None:
            self._trim(0)
        logger.info(
            "no subscription left (%d ended): %d unreachable objects freed in %.0f ms",
            self.ended,
            found,
            (time.perf_counter() - started) * 1000,
        )
        self.ended = 0
