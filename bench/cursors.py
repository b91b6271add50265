"""CPU cost of page cursors: the sealed codec against the readable format it replaced.

    .venv/bin/python -m bench.cursors

A page of 50 jobs seals 50 cursors (every edge's; `endCursor` is the last one);
a request with `after` / `cursor` opens one.
"""

from __future__ import annotations

import base64
import timeit
from collections.abc import Callable

from app.jobs.cursors import CursorCodec
from app.settings import Settings

PAGE = 50
SECRET = "k9Vq2LrT8wXz3NbY6mPd1HsJ4fGc7AeU0oIiRtWy5Q"


def _old_encode(seq: int) -> str:
    return base64.urlsafe_b64encode(f"job:{seq}".encode()).decode()


def _old_decode(cursor: str) -> int:
    return int(base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")[4:])


def _best(work: Callable[[], object], number: int) -> float:
    """Microseconds per call, best of 5 runs (the least disturbed by other load)."""
    return min(timeit.repeat(work, number=number, repeat=5)) / number * 1e6


def main() -> None:
    codec = CursorCodec.from_settings(Settings(auth_jwt_secret=SECRET))
    seqs = range(1_000_000, 1_000_000 + PAGE)
    sealed = codec.encode("acme", seqs[0])
    readable = _old_encode(seqs[0])
    rows = [
        (f"seal a page of {PAGE}", lambda: [_old_encode(s) for s in seqs],
         lambda: [codec.encode("acme", s) for s in seqs], 2_000),
        ("open one", lambda: _old_decode(readable),
         lambda: codec.decode("acme", sealed, "after"), 50_000),
    ]  # fmt: skip
    print("| work | readable `job:<seq>` µs | sealed (AES-SIV) µs |")
    print("|---|---:|---:|")
    for name, old, new, number in rows:
        print(f"| {name} | {_best(old, number):.1f} | {_best(new, number):.1f} |")


if __name__ == "__main__":
    main()
