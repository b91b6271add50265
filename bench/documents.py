"""What hostile GraphQL documents cost the gateway, before a token is even looked at.

    .venv/bin/python -m bench.documents [--timeout 30]

Starts the real gateway (`python -m app serve`, AUTH_JWT_SECRET set, SQLite in a
temporary folder) and POSTs, without a token, each document of `documents()`: the
fragments that each spread the next one twice (N=17, 20, 60), the document of 1,990
duplicated fields just under the token cap, a 100-deep introspection `ofType` chain
and a 700-deep selection. For each: the seconds until the answer (or the timeout),
the HTTP status and the error codes. A second figure, `/healthz` under load, is the
median answer time of /healthz while 4 clients each send a duplicated-field document
(1,990 fields, then 999: unique each time, so no cache helps) 5 times a second.
`--in-process` instead times each document's parse and validation alone (no server,
no network), through the schema's own extensions, the median of 5 runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx

if __package__ in (None, ""):  # run as `python bench/documents.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.servers import Server, start_server

SECRET = "k9Vq2LrT8wXz3NbY6mPd1HsJ4fGc7AeU0oIiRtWy5Q"


def doubling_fragments(n: int) -> str:
    """Fragment Fk spreads F(k+1) twice: 2^n `__typename` once expanded."""
    parts = ["{ ...F0 }"]
    parts += [f"fragment F{k} on Query {{ ...F{k + 1} ...F{k + 1} }}" for k in range(n)]
    parts.append(f"fragment F{n} on Query {{ __typename }}")
    return " ".join(parts)


def duplicated_fields(count: int = 1990, salt: str = "") -> str:
    """`count` times the same field (one token each), unique per `salt`."""
    name = f"query Q{salt} " if salt else ""
    return name + "{ " + "__typename " * count + "}"


def of_type_chain(depth: int) -> str:
    return '{ __type(name: "Job") { ' + "ofType { " * depth + "name" + " }" * depth + " } }"


def nested_selection(depth: int) -> str:
    return "{ " + "jobs { " * depth + "totalCount" + " }" * depth + " }"


def documents() -> Iterator[tuple[str, str]]:
    for n in (17, 20, 60):
        yield f"doubling fragments N={n}", doubling_fragments(n)
    yield "1,990 duplicated fields", duplicated_fields()
    yield "ofType chain 100 deep", of_type_chain(100)
    yield "selection 700 deep", nested_selection(700)


def post(server: Server, query: str, timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        response = httpx.post(server.url + "/graphql", json={"query": query}, timeout=timeout)
    except httpx.TimeoutException:
        return time.perf_counter() - start, f"no answer in {timeout:.0f} s"
    elapsed = time.perf_counter() - start
    try:
        codes = [e["extensions"]["code"] for e in response.json().get("errors", [])]
    except ValueError:
        codes = ["(not JSON)"]
    return elapsed, f"{response.status_code} {sorted(set(codes)) or 'data'}"


def healthz_under_load(server: Server, fields: int, seconds: float = 10, clients: int = 4) -> float:
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                started = time.monotonic()
                query = duplicated_fields(fields, salt=str(next(counter)))
                http.post(server.url + "/graphql", json={"query": query})
                time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    times = []
    with httpx.Client(timeout=30) as http:
        while time.monotonic() < stop:
            started = time.perf_counter()
            http.get(server.url + "/healthz")
            times.append(time.perf_counter() - started)
            time.sleep(0.05)
    for thread in threads:
        thread.join()
    return statistics.median(times)


def in_process(skip: tuple[str, ...]) -> None:
    from app.graphql.schema import create_schema
    from app.settings import Settings

    schema = create_schema(Settings(auth_jwt_secret=SECRET))
    extra = [("999 duplicated fields", duplicated_fields(999))]
    for name, query in [*documents(), *extra]:
        if any(word in name for word in skip):
            print(f"{name:28} skipped")
            continue
        times = []
        for run in range(5):
            # Unique text each run: no cache helps.
            text = query.replace("{", f"query Q{run} {{", 1) if query.startswith("{") else query
            started = time.perf_counter()
            result = schema.execute_sync(text)
            times.append(time.perf_counter() - started)
        codes = sorted({(e.extensions or {}).get("code", "?") for e in result.errors or ()})
        print(f"{name:28} {statistics.median(times) * 1000:9.1f} ms  {codes or 'data'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--skip", nargs="*", default=())
    args = parser.parse_args()
    if args.in_process:
        in_process(tuple(args.skip))
        return
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "AUTH_JWT_SECRET": SECRET,
            "DATABASE_URL": f"sqlite:///{folder}/jobs.db",
            "PYTHONPATH": os.getcwd(),
        }
        quiet = time.perf_counter()
        for name, query in documents():
            # A fresh server each: one that hangs must not delay the next.
            server = start_server(env, Path(folder) / "server.log")
            try:
                elapsed, answer = post(server, query, args.timeout)
                print(f"{name:28} {len(query):6} bytes  {elapsed:7.3f} s  {answer}", flush=True)
            finally:
                server.process.kill()
                server.process.wait()
        server = start_server(env, Path(folder) / "server.log")
        try:
            idle = statistics.median(_healthz_times(server))
            print(f"/healthz median: idle {idle * 1000:.1f} ms")
            for fields in (1990, 999):
                busy = healthz_under_load(server, fields)
                print(f"  under load of {fields} duplicated fields: {busy * 1000:.1f} ms")
        finally:
            server.stop()
        print(f"({time.perf_counter() - quiet:.0f} s in all)")


def _healthz_times(server: Server, count: int = 50) -> list[float]:
    times = []
    with httpx.Client(timeout=10) as http:
        for _ in range(count):
            started = time.perf_counter()
            http.get(server.url + "/healthz")
            times.append(time.perf_counter() - started)
    return times


if __name__ == "__main__":
    main()
