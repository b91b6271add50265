"""HTTP request cost: the gateway beside bare Starlette routes on the same database.

    .venv/bin/python -m bench.http [--duration 10] [--rounds 3] [--connections 32]

Prepares a SQLite file with 10,000 jobs, starts the real gateway (`python -m app
serve`, open mode, loopback) and the baselines of `bench.baselines` on it, each one
uvicorn worker pinned to core 0 (`taskset`), and loads them from core 1 with wrk
(`apt-get install -y wrk`; without it, the asyncio client in `bench.load`). Rounds
interleave the servers; the table gives medians of the rounds, and each server's
req/s as a ratio of the best bare route's in the same round, the median of those
(`bench.baselines.bare_fastest`: one reused connection, plain SQL prepared once,
orjson; it answers the reads). Everything stops
at the end; only 127.0.0.1 is used.

`--profile py-spy --only KIND` instead records where the gateway's time goes under
one request kind's load, into bench/out/ (a speedscope file and a text summary).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/http.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import Request, Result, run_python, run_wrk, wrk_path
from bench.scenarios import (
    BEST_BARE,
    FASTEST,
    GATEWAY,
    PER_CALL,
    REUSED,
    STRAWBERRY,
    Scenario,
    prepare_database,
    scenarios,
)
from support import report
from support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


# --- servers --------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def start_server(name: str, command: list[str], env: dict[str, str], logs: Path) -> Server:
    port = free_port()
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTH_JWT_", "DATABASE_", "BROADCAST_"))
    }
    full_env.update(env)
    full_env["PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    log = logs / (name.replace(" ", "_").replace(",", "") + ".log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_pin(0), *command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} did not start in 60 s:\n{log.read_text()}")


@contextmanager
def servers(database_url: str, names: Sequence[str], logs: Path) -> Iterator[dict[str, Server]]:
    python = sys.executable
    uvicorn = [python, "-m", "uvicorn", "--log-level", "warning", "--factory"]
    commands = {
        GATEWAY: ([python, "-m", "app", "serve", "--log-level", "warning"], "DATABASE_URL"),
        PER_CALL: ([*uvicorn, "bench.baselines:bare_per_call"], "BENCH_DATABASE_URL"),
        REUSED: ([*uvicorn, "bench.baselines:bare_reused"], "BENCH_DATABASE_URL"),
        FASTEST: ([*uvicorn, "bench.baselines:bare_fastest"], "BENCH_DATABASE_URL"),
        STRAWBERRY: ([*uvicorn, "bench.baselines:strawberry_default"], "BENCH_DATABASE_URL"),
    }
    started: dict[str, Server] = {}
    try:
        for name in names:
            command, variable = commands[name]
            started[name] = start_server(name, command, {variable: database_url}, logs)
        yield started
    finally:
        for server in started.values():
            server.stop()


def fetch(url: str, request: Request) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url + request.path,
        data=request.body or None,
        method=request.method,
        headers={"Content-Type": request.content_type, "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


# --- measuring ------------------------------------------------------------------------


def load(url: str, request: Request, duration: float, connections: int) -> Result:
    runner = run_wrk if wrk_path() else run_python
    return runner(url, request, duration, connections, prefix=_pin(1))


@dataclass
class Row:
    scenario: Scenario
    server: str
    results: list[Result]

    def median(self, field: str) -> float:
        return float(statistics.median(getattr(result, field) for result in self.results))


def measure(
    chosen: list[Scenario],
    running: dict[str, Server],
    rounds: int,
    duration: float,
    connections: int,
) -> list[Row]:
    rows = {
        (scenario.name, name): Row(scenario, name, [])
        for scenario in chosen
        for name in running
        if name in scenario.requests
    }
    for scenario in chosen:  # warm up: caches, the file's pages, the allocator
        for name, server in running.items():
            if name in scenario.requests:
                load(server.url, scenario.requests[name], 1, connections)
    for round_number in range(rounds):
        for scenario in chosen:
            names = [name for name in running if name in scenario.requests]
            # Rotate who goes first, so no server always follows the same one.
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                result = load(running[name].url, scenario.requests[name], duration, connections)
                rows[scenario.name, name].results.append(result)
                print(
                    f"  round {round_number + 1} {scenario.name:<8} {name:<28} "
                    f"{result.requests_per_second:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:6.2f} ms  failures {result.failures}",
                    file=sys.stderr,
                    flush=True,
                )
    return list(rows.values())


def table(rows: list[Row]) -> str:
    headers = ("request", "server", "req/s", "p50 ms", "p99 ms", "vs best bare")
    lines: list[tuple[str, ...]] = []
    best = {row.scenario.name: row for row in rows if row.server == BEST_BARE}
    previous = None
    for row in rows:
        rate = row.median("requests_per_second")
        yardstick = best.get(row.scenario.name)
        ratio = f"{paired_ratio(row, yardstick):.2f}" if yardstick is not None else "-"
        failures = sum(result.failures for result in row.results)
        server = row.server + (f" ({failures} failed)" if failures else "")
        title = row.scenario.title if row.scenario.name != previous else ""
        previous = row.scenario.name
        p50, p99 = row.median("p50_ms"), row.median("p99_ms")
        lines.append((title, server, f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}", ratio))
    return report.table(headers, lines, right={2, 3, 4, 5})


def paired_ratio(row: Row, yardstick: Row) -> float:
    """The median of each round's ratio: the two ran one after the other in that round,
    so a machine busier in one round than another moves both (the others' work on a
    shared machine swung req/s by 3-10x between rounds of one run here)."""
    return float(
        statistics.median(
            result.requests_per_second / best.requests_per_second
            for result, best in zip(row.results, yardstick.results, strict=True)
        )
    )


def machine(rounds: int, duration: float, connections: int, load_before: float) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    generator = (
        f"wrk -t1 -c{connections} -d{duration:g}s"
        if wrk_path()
        else f"bench.load (asyncio), {connections} connections, {duration:g}s"
    )
    pinning = "servers on core 0, load on core 1" if _pin(0) else "no pinning (taskset missing)"
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{generator}, medians of {rounds} interleaved rounds, {pinning}; "
        f"load average {load_before:.1f} before the run (other work on the machine slows "
        "every server alike: compare ratios, not req/s, across runs)"
    )


# --- profiling ------------------------------------------------------------------------


def profile(
    tool: str, scenario: Scenario, server: Server, duration: float, connections: int
) -> Path:
    OUT.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load(server.url, scenario.requests[GATEWAY], 1, connections)
    if tool == "py-spy":
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        target = OUT / f"{scenario.name}-{stamp}.speedscope.json"
        recorder = subprocess.Popen(
            [
                spy, "record", "--pid", str(server.process.pid), "--rate", "500",
                "--duration", str(round(duration)), "--format", "speedscope",
                "--output", str(target), "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        result = load(server.url, scenario.requests[GATEWAY], duration, connections)
        recorder.wait(timeout=duration + 30)
        # A top-down text summary alongside the file speedscope.app opens.
        summary = OUT / f"{scenario.name}-{stamp}.txt"
        summary.write_text(_speedscope_summary(target))
    print(
        f"{result.requests_per_second:.0f} req/s while profiling; see {target} and {summary}",
        file=sys.stderr,
    )
    return summary


def _speedscope_summary(path: Path, limit: int = 60) -> str:
    """Inclusive and self time per function, from a py-spy speedscope file."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    inclusive: dict[int, int] = {}
    own: dict[int, int] = {}
    total = 0
    for prof in data["profiles"]:
        for sample, weight in zip(prof["samples"], prof["weights"], strict=True):
            total += weight
            for frame in set(sample):
                inclusive[frame] = inclusive.get(frame, 0) + weight
            if sample:
                own[sample[-1]] = own.get(sample[-1], 0) + weight

    def name(index: int) -> str:
        frame = frames[index]
        file = frame.get("file", "").replace(str(ROOT) + "/", "")
        file = file.split("site-packages/")[-1]
        return f"{frame['name']} ({file}:{frame.get('line', '')})"

    lines = [f"{total} samples", "", "inclusive:"]
    for index, weight in sorted(inclusive.items(), key=lambda item: -item[1])[:limit]:
        lines.append(f"{100 * weight / total:6.1f}%  {name(index)}")
    lines += ["", "self:"]
    for index, weight in sorted(own.items(), key=lambda item: -item[1])[:limit]:
        lines.append(f"{100 * weight / total:6.1f}%  {name(index)}")
    return "\n".join(lines) + "\n"


# --- the command ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--connections", type=int, default=32, help="open connections (32)")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the file (10,000)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated request kinds: job,job-persisted,jobs,jobs-persisted,"
        "cursors,create,progress,rest",
    )
    parser.add_argument(
        "--servers",
        default="",
        help="comma-separated: gateway,per-call,reused,fastest,strawberry (default: all)",
    )
    parser.add_argument("--profile", choices=["py-spy"], help="profile the gateway instead")
    args = parser.parse_args(argv)

    chosen = scenarios()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {scenario.name for scenario in chosen}
        if unknown:
            parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
        chosen = [scenario for scenario in chosen if scenario.name in wanted]
    short = {
        "gateway": GATEWAY,
        "per-call": PER_CALL,
        "reused": REUSED,
        "fastest": FASTEST,
        "strawberry": STRAWBERRY,
    }
    names = (
        [short[name] for name in args.servers.split(",")] if args.servers else list(short.values())
    )
    if args.profile:
        names = [GATEWAY]
        if len(chosen) != 1:
            parser.error("--profile needs exactly one request kind in --only")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-http-") as folder:
        database_url = f"sqlite:///{folder}/jobs.db"
        started = time.monotonic()
        prepare_database(database_url, args.jobs)
        print(f"prepared {args.jobs:,} jobs in {time.monotonic() - started:.1f} s", file=sys.stderr)
        with servers(database_url, names, Path(folder)) as running:
            for scenario in chosen:
                if scenario.setup is not None and GATEWAY in running:
                    fetch(running[GATEWAY].url, scenario.setup)
            for scenario in chosen:
                for name, server in running.items():
                    if name not in scenario.requests:
                        continue
                    status, answer = fetch(server.url, scenario.requests[name])
                    if not 200 <= status < 300 or (name == GATEWAY and not scenario.check(answer)):
                        raise SystemExit(
                            f"{name} answered {scenario.name} wrongly: {status} {answer}"
                        )
            if args.profile:
                profile(args.profile, chosen[0], running[GATEWAY], args.duration, args.connections)
                return 0
            rows = measure(chosen, running, args.rounds, args.duration, args.connections)
    print(machine(args.rounds, args.duration, args.connections, load_before))
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
