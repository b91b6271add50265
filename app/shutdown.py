"""Finish work that must end before the server drops connections on SIGTERM / SIGINT.

uvicorn closes every WebSocket (code 1012) the moment it starts shutting down,
before the application's lifespan hears of it: subscribers would see a dropped
socket instead of `complete`. So while the app runs, an exit signal first runs
`drain` (bounded by a timeout), then goes on to the handler the server installed.
A second signal goes on at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger("app")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def drain_before_exit(drain: Callable[[], Awaitable[None]], timeout: float) -> Iterator[None]:
    # Signal handlers belong to the main thread (not, say, a test client's thread).
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    # The drain task, once a signal has come (kept referenced while it runs).
    draining: list[asyncio.Task[None]] = []
    signalled = threading.Event()

    def pass_on(sig: int, frame: FrameType | None) -> None:
        handler = previous[sig]
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    async def drain_then_pass_on(sig: int) -> None:
        try:
            await asyncio.wait_for(drain(), timeout)
        except Exception:
            logger.exception("draining before shutdown failed")
        finally:
            pass_on(sig, None)

    def start(sig: int) -> None:
        draining.append(loop.create_task(drain_then_pass_on(sig)))

    def handle(sig: int, frame: FrameType | None) -> None:
        if signalled.is_set():
            pass_on(sig, frame)
            return
        signalled.set()
        logger.info("%s: ending live subscriptions first", signal.Signals(sig).name)
        # A handler may run in the middle of the event loop's own code: schedule.
        loop.call_soon_threadsafe(start, sig)

    for sig in SIGNALS:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            if signal.getsignal(number) is handle:
                signal.signal(number, handler)
