"""A connection's frames from fanned-out subscriptions: written at once, never waited for.

A write never waits: uvicorn puts a frame in the transport's buffer and returns.
Only when a client stops reading and that buffer is full does the `Outbox` hand
the write to a task; until it is done, later frames wait here, per subscription
and job the latest state only (at most MAILBOX_LIMIT jobs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator, Hashable
from contextlib import suppress
from typing import Any

from app.jobs.buffers import Backlog
from app.jobs.mailbox import MAILBOX_LIMIT


class Outbox:
    """One connection's frames from fanned-out subscriptions, in order, never waited for.

    A frame is written at once. If the write cannot finish (the client stopped reading
    and the transport paused writing), one task finishes it, and until then later
    frames wait here, per subscription: the latest `next` of each job (one for
    `jobProgress`; for `jobUpdates`, of each job it heard of, in the order of their
    latest changes, at most MAILBOX_LIMIT jobs), then its final frame.
    """

    __slots__ = ("_send", "_waiting", "_writing", "closed")

    def __init__(self, send: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        self._send = send
        self._writing: asyncio.Task[None] | None = None
        # Operation id -> its frames waiting, by job (None: its one job; FINAL last).
        self._waiting: dict[str, Backlog[str]] = {}
        self.closed = False

    def write(self, op: str, frame: str, job: Hashable = None, final: bool = False) -> bool:
        """Send or keep `frame`; False once `op` has more than MAILBOX_LIMIT jobs waiting."""
        if self.closed:
            return True
        if self._writing is None:
            self._start(frame)
            return True
        slot = self._waiting.get(op)
        if slot is None:
            slot = self._waiting[op] = Backlog(MAILBOX_LIMIT)
        # A later state replaces the one waiting, and goes after the other jobs': each
        # job's states stay in order, the final frame last.
        return slot.put(FINAL if final else job, frame)

    def drop(self, op: str) -> None:
        """Forget what waits for `op` (its client ended it)."""
        self._waiting.pop(op, None)

    async def flushed(self) -> None:
        """Wait until every frame written so far has been handed to the transport
        (an HTTP stream waits so before it ends, and its own path for backpressure)."""
        while self._writing is not None and not self.closed:
            await asyncio.wait({self._writing})

    async def close(self) -> None:
        self.closed = True
        self._waiting.clear()
        writing = self._writing
        if writing is not None:
            writing.cancel()
            with suppress(BaseException):
                await writing

    def _start(self, frame: str) -> None:
        # Run the send by hand: it returns at its first step unless writing is paused.
        send = self._send(frame)
        try:
            blocker = send.send(None)
        except StopIteration:
            return
        except Exception:  # the client is gone; its connection's handler cleans up
            self.closed = True
            return
        self._writing = asyncio.ensure_future(self._finish(send, blocker))

    async def _finish(self, send: Coroutine[Any, Any, None], blocker: Any) -> None:
        try:
            await _Resume(send, blocker)
            # One frame at a time, so what waits is what `write` counts.
            while self._waiting and not self.closed:
                op, slot = next(iter(self._waiting.items()))
                frame = slot.pop()
                if not slot:
                    del self._waiting[op]
                await self._send(frame)
        except Exception:
            self.closed = True
            self._waiting.clear()
        finally:
            self._writing = None


# The key of a subscription's final frame in the outbox (after its `next` frames).
FINAL = object()


class _Resume:
    """Awaits the rest of a coroutine started by hand, now waiting on `blocker`.

    It yields to the task what the coroutine yielded, and passes back what the task
    sends or throws in (a task always resumes with None, or throws in a cancellation).
    """

    __slots__ = ("_blocker", "_coroutine")

    def __init__(self, coroutine: Coroutine[Any, Any, None], blocker: Any) -> None:
        self._coroutine = coroutine
        self._blocker = blocker

    def __await__(self) -> Generator[Any, None, None]:
        coroutine, blocker = self._coroutine, self._blocker
        while True:
            try:
                yield blocker
            except BaseException as exc:
                try:
                    blocker = coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    blocker = coroutine.send(None)
                except StopIteration:
                    return
