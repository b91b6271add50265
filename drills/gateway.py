"""A gateway process for drills, a probe that watches it stay responsive, and its RSS.

Drills are not tests and not benchmarks: they run a real `python -m app serve` and do
to it what an operator fears (hostile input, faults), then print a table. This module
is what they share; it imports nothing from tests/ or bench/.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(cores: set[int]) -> None:
    """Run on `cores` where the machine has them (so a drill's client and the server
    it attacks do not share one core's time)."""
    available = os.sched_getaffinity(0)
    wanted = cores & available
    if wanted and len(available) > 1:
        os.sched_setaffinity(0, wanted)


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/graphql"

    def rss_mib(self) -> float:
        """Resident memory of the server process (uvicorn runs in it with one worker)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(env: Mapping[str, str], log: Path, core: int | None = 0) -> Gateway:
    port = free_port()
    full_env = {**os.environ, **env}
    full_env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{port}")

    def setup() -> None:  # in the child, before exec
        if core is not None:
            pin({core})

    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=setup,
        )
    gateway = Gateway(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(gateway.url + "/healthz", timeout=1).status_code == 200:
                return gateway
        time.sleep(0.05)
    gateway.stop()
    raise RuntimeError(f"gateway not ready in 30 s:\n{log.read_text()}")


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
        """The probe requests started from `start` to `end` (time.monotonic())."""
        self._drain()
        window = [(took, ok) for began, took, ok in self._seen if start <= began <= end]
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


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded, so it reads in a terminal and in docs/."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )
