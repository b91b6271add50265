"""Real gateway processes for tests, drills and benchmarks: `python -m app serve` on a free port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent


def pin(cores: set[int]) -> None:
    """Run on `cores` where the machine has them, so a client and the server it
    measures do not share one core's time."""
    available = os.sched_getaffinity(0)
    wanted = cores & available
    if wanted and len(available) > 1:
        os.sched_setaffinity(0, wanted)


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


def children(pid: int) -> list[int]:
    """The processes `pid` started (uvicorn's workers, with `--workers N`)."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_kib(self) -> int:
        """Resident memory of the server (uvicorn serves in this process with one worker)."""
        return rss_kib(self.process.pid)

    def workers(self) -> list[int]:
        """The worker processes of a `--workers N` server (none with one worker)."""
        # uvicorn's multiprocessing also starts a resource tracker: workers run `app`.
        return [pid for pid in children(self.process.pid) if _is_worker(pid)]

    def total_rss_kib(self) -> int:
        """Resident memory of the server and its workers; one that just exited counts 0."""
        total = 0
        for pid in (self.process.pid, *self.workers()):
            with contextlib.suppress(OSError, RuntimeError):
                total += rss_kib(pid)
        return total

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/graphql"

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _is_worker(pid: int) -> bool:
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def start_server(
    env: Mapping[str, str],
    log: Path,
    args: tuple[str, ...] = (),
    timeout: float = 20,
    core: int | None = None,
    command: tuple[str, ...] = (sys.executable, "-m", "app"),
    cwd: Path = ROOT,
) -> Server:
    """Start a gateway process (on `core`, if given) and wait until /readyz answers 200.

    `command serve --port N` starts it: this checkout's by default, or another
    installation's (`.../bin/jobs-gateway`) from another `cwd`."""
    port = free_port()
    full_env = {**os.environ, **env}
    full_env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{port}")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "serve", "--port", str(port), *args],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=None if core is None else lambda: pin({core}),
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become ready in {timeout}s:\n{log.read_text()}")
