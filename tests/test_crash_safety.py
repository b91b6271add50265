"""SIGKILL at random moments under a steady stream of writes: nothing acknowledged is lost.

The short version of `python -m drills.crash` (3 kills here, 20 there), on SQLite and
on PostgreSQL (TEST_POSTGRES_URL). The seed is in the failure message, so a failing
run can be repeated with `python -m drills.crash --seed N`.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from drills import crash

pytestmark = pytest.mark.anyio

KILLS = 3
WRITERS = 4


async def test_every_acknowledged_write_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    tally = await crash.run(database_url, KILLS, WRITERS, seed, tmp_path)
    assert tally.lost == [], f"seed {seed}"
    # Each round wrote and was verified (the check above had something to check).
    assert tally.acknowledged >= KILLS, f"seed {seed}"


@pytest.mark.engines("sqlite")
async def test_a_write_changed_behind_the_gateways_back_is_reported(
    database_url: str, tmp_path: Path
) -> None:
    path = database_url.removeprefix("sqlite:///")

    def damage(round_number: int) -> None:
        with sqlite3.connect(path) as stored:
            stored.execute("UPDATE jobs SET video = ? WHERE seq = 1", ("0" * 32,))

    tally = await crash.run(database_url, 1, WRITERS, 1, tmp_path, after_kill=damage)
    assert len(tally.lost) == 1 and tally.lost[0].startswith("job "), tally.lost
