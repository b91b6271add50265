"""A probe that watches a gateway stay responsive while a drill does its worst."""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from support.servers import pin

# --- the probe ---------------------------------------------------------------------------


@dataclass
class ProbeStats:
    count: int
    failures: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _probe_loop(url: str, interval: float, core: int | None, samples: Any, stop: Any) -> None:
    if core is not None:
        pin({core})
    # A fresh connection per request: what a load balancer's health check does, and a
    # stalled accept loop shows up as it would to one.
    while not stop.is_set():
        started = time.monotonic()
        ok = True
        try:
            ok = httpx.get(url, timeout=30).status_code == 200
        except httpx.HTTPError:
            ok = False
        samples.put((started, time.monotonic() - started, ok))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


class Probe:
    """GET /healthz every `interval` seconds from another process, each timed."""

    def __init__(self, url: str, interval: float = 0.05, core: int | None = 1) -> None:
        context = multiprocessing.get_context("spawn")
        self._samples = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(
            target=_probe_loop,
            args=(url + "/healthz", interval, core, self._samples, self._stop),
            daemon=True,
        )
        self._seen: list[tuple[float, float, bool]] = []

    def __enter__(self) -> Probe:
        self._process.start()
        # Its first answer: the process has started and the gateway answers it.
        self._seen.append(self._samples.get(timeout=60))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(2)
        if self._process.is_alive():
            self._process.kill()

    def _drain(self) -> None:
        while True:
            try:
                self._seen.append(self._samples.get_nowait())
            except Exception:  # queue.Empty
                return

    def between(self, start: float, end: float) -> ProbeStats:
        """The probe requests under way from `start` to `end` (time.monotonic()).

        Waits for the probe to start one after `end`, so a request still waiting on a
        stalled server is counted (as failed, if it never comes back).
        """
        self._drain()
        deadline = time.monotonic() + 40
        while not any(began > end for began, _, _ in self._seen[-3:]):
            try:
                self._seen.append(self._samples.get(timeout=max(0.1, deadline - time.monotonic())))
            except Exception:  # queue.Empty: the probe is stuck on a request
                self._seen.append((end, time.monotonic() - end, False))
                break
        # Every request under way during the window, begun in it or before it.
        window = [
            (took, ok) for began, took, ok in self._seen if began <= end and began + took >= start
        ]
        times = sorted(took * 1000 for took, _ in window) or [0.0]
        return ProbeStats(
            count=len(window),
            failures=sum(1 for _, ok in window if not ok),
            p50_ms=statistics.median(times),
            p99_ms=times[min(len(times) - 1, int(len(times) * 0.99))],
            max_ms=times[-1],
        )


@contextlib.contextmanager
def raised_file_limit() -> Iterator[None]:
    """Drills open thousands of sockets; lift the soft limit on open files to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
