"""Load generators: wrk when installed, else a small asyncio HTTP/1.1 keep-alive client.

Both send one fixed request over `connections` keep-alive connections for `duration`
seconds and report requests/s, p50 and p99 latency, and failures (non-2xx answers, answers
holding GraphQL `"errors"`, socket errors). `python -m bench.load URL ...` runs the Python one on its own, so
it can be pinned to a core like wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int


def wrk_path() -> str | None:
    return shutil.which("wrk")


_WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
wrk.headers["Content-Type"] = {content_type}
wrk.headers["Accept"] = "application/json"
local threads = {{}}
setup = function(thread) table.insert(threads, thread) end
init = function(args) refused = 0 end
-- A GraphQL error comes with status 200: count answers that carry one.
response = function(status, headers, body)
  if string.find(body, '"errors"', 1, true) then refused = refused + 1 end
end
done = function(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.status + errors.connect + errors.read + errors.write + errors.timeout
  for _, thread in ipairs(threads) do failed = failed + thread:get("refused") end
  io.write(string.format(
    "BENCH %d %d %d %d %d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), failed))
end
"""


def _lua_string(value: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in value
    return f"[{level}[{value}]{level}]"


def run_wrk(
    base_url: str,
    request: Request,
    duration: float,
    connections: int,
    prefix: Sequence[str] = (),
) -> Result:
    script = _WRK_SCRIPT.format(
        method=_lua_string(request.method),
        body=_lua_string(request.body.decode()),
        content_type=_lua_string(request.content_type),
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        out = subprocess.run(
            [
                *prefix,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "10s",
                "-s",
                file.name,
                base_url + request.path,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(file.name)
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    count, duration_us, p50_us, p99_us, failures = (int(part) for part in line.split()[1:])
    return Result(
        requests_per_second=count / (duration_us / 1e6),
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        requests=count,
        failures=failures,
    )


def run_python(
    base_url: str,
    request: Request,
    duration: float,
    connections: int,
    prefix: Sequence[str] = (),
) -> Result:
    """The asyncio client, in a process of its own (pinned by `prefix`)."""
    out = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "bench.load",
            base_url + request.path,
            "--method",
            request.method,
            "--body",
            request.body.decode(),
            "--content-type",
            request.content_type,
            "--duration",
            str(duration),
            "--connections",
            str(connections),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    return Result(**json.loads(out))


async def _load(url: str, request: Request, duration: float, connections: int) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"{request.method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Accept: application/json\r\nContent-Type: {request.content_type}\r\n"
        f"Content-Length: {len(request.body)}\r\n\r\n"
    ).encode()
    message = head + request.body
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + duration

    async def client() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(message)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                # A GraphQL error comes with status 200: count answers that carry one.
                if not status_line.split(b" ")[1].startswith(b"2") or b'"errors"' in body:
                    failures += 1
        except (OSError, asyncio.IncompleteReadError, IndexError):
            failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0
        )

    return Result(
        requests_per_second=len(latencies) / elapsed,
        p50_ms=percentile(0.50),
        p99_ms=percentile(0.99),
        requests=len(latencies),
        failures=failures,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    request = Request(args.method, "", args.body.encode(), args.content_type)
    work = _load(args.url, request, args.duration, args.connections)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(work)
    else:
        result = uvloop.run(work)
    print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
