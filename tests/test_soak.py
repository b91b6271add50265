"""A short soak (`python -m drills.soak` with fewer subscribers, for seconds not minutes):
no error of any kind, and after the last round the process is back to the memory
it had after the first (within 10%) with no task left over."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from drills.soak import Options, soak, table

pytestmark = pytest.mark.anyio


async def test_subscribers_and_steady_load_leave_no_error_memory_or_task_behind(
    tmp_path: Path,
) -> None:
    # Four rounds: a leak of one subscription's objects (~30 KiB each) ends ~17% up,
    # where a run without one ends ~2% up.
    options = Options(
        subscribers=200, rounds=4, round_seconds=3, rate=40, jobs=20, seed=random.randrange(2**32)
    )
    result = await soak(options, tmp_path)
    summary = f"seed {options.seed}\n{table(result)}"
    assert result.errors == [], summary
    assert result.complete, summary
    assert all(r.subscriptions_peak == options.subscribers for r in result.rounds), summary
    assert all(r.delivered and r.reports and r.queries for r in result.rounds), summary
    assert result.memory_back, summary
    assert result.tasks_end <= result.tasks_baseline, summary
