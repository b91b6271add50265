"""DATABASE_POOL_SIZE: how many PostgreSQL connections one gateway process may hold."""

from __future__ import annotations

import asyncio

import pytest

from app import db
from app.settings import Settings, SettingsError


def test_pool_size_comes_from_the_environment() -> None:
    assert Settings.from_env({}).database_pool_size == 10
    assert Settings.from_env({"DATABASE_POOL_SIZE": "3"}).database_pool_size == 3


@pytest.mark.parametrize("value", ["0", "-1", "ten", "2.5", "1001"])
def test_a_bad_pool_size_names_the_setting_and_the_range(value: str) -> None:
    with pytest.raises(SettingsError, match=r"DATABASE_POOL_SIZE must be a whole number from 1"):
        Settings.from_env({"DATABASE_POOL_SIZE": value})


@pytest.mark.engines("postgresql")
@pytest.mark.parametrize("size", [3, 8])
@pytest.mark.anyio
async def test_a_busy_process_holds_exactly_pool_size_connections(
    database_url: str, size: int
) -> None:
    database = await db.connect(Settings(database_url=database_url, database_pool_size=size))
    try:
        # The pool opens one connection at start; later ones start after it.
        first = await database.fetch_val(
            "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
        # 20 queries at once: each asyncio task takes its own pooled connection.
        await asyncio.gather(*(database.fetch_val("SELECT pg_sleep(0.05)") for _ in range(20)))
        # Idle pooled connections stay open, so this counts every one the pool opened
        # (not an earlier test's that may still be closing).
        opened = await database.fetch_val(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            f" AND application_name = '{db.APPLICATION_NAME}' AND backend_start >= :first",
            {"first": first},
        )
    finally:
        await database.disconnect()
    assert opened == size
