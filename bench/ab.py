"""A/B: one benchmark run alternately on an earlier commit and on this checkout.

    .venv/bin/python -m bench.ab --base 20ee67f --rounds 2 -- bench.http --servers gateway,reused

Each benchmark measures the gateway beside its own bare yardstick in the same run, so
the ratio to that yardstick is what compares across commits on a noisy machine;
alternating A and B spreads the machine's drift over both. The earlier commit is
checked out with `git worktree` into a temporary folder and run with this checkout's
virtual environment (the locked dependency set); its tables and ours are printed as
they come, labelled, and the worktree is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(label: str, checkout: Path, module_args: list[str]) -> str:
    print(f"--- {label} ({checkout}) ---", file=sys.stderr, flush=True)
    done = subprocess.run(
        [sys.executable, "-m", *module_args],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"{label}: exit {done.returncode}\n{done.stderr[-2000:]}"
    return f"{label}\n{done.stdout}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the earlier commit (A)")
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs (2)")
    parser.add_argument("module", nargs=argparse.REMAINDER, help="-- bench.MODULE [its options]")
    args = parser.parse_args(argv)
    module_args = [a for a in args.module if a != "--"]
    if not module_args:
        parser.error("name the benchmark after --, e.g. -- bench.http")
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.base],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for n in range(1, args.rounds + 1):
                print(run(f"A {args.base} round {n}", base, module_args), flush=True)
                print(run(f"B this checkout round {n}", ROOT, module_args), flush=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
