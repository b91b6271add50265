"""Many workers reporting at once, through a real server: progress never goes
backwards and a finished job never changes again."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx2 as httpx
import pytest

from support.servers import Server
from tests.jobs_data import REPORT, request_object

TASKS = 50
REPORTS_PER_TASK = 20


@pytest.mark.anyio
async def test_concurrent_progress_reports_keep_the_state_rules(server: Server) -> None:
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=TASKS)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        job = (await client.post("/encoding/jobs", json=request_object())).json()
        job_url = f"/encoding/jobs/{job['id']}"
        accepted: list[int] = []
        refused: list[str] = []
        completed_at: list[dict[str, Any]] = []
        stop_reading = asyncio.Event()
        observed: list[int] = []

        async def reader() -> None:
            # One client reading over and over sees a progress that never goes down.
            while not stop_reading.is_set():
                observed.append((await client.get(job_url)).json()["progress"])

        async def worker(index: int) -> None:
            values = [rng.randint(0, 99) for _ in range(REPORTS_PER_TASK)]
            for step, progress in enumerate(values):
                status = None
                if (index, step) == (TASKS // 2, REPORTS_PER_TASK // 2):
                    # Half-way through, one worker finishes the job (99: never lower).
                    status, progress = "COMPLETED", 99
                body = (
                    await client.post(
                        "/graphql",
                        json={
                            "query": REPORT,
                            "variables": {"id": job["id"], "progress": progress, "status": status},
                        },
                    )
                ).json()
                if "errors" in body:
                    refused.append(body["errors"][0]["extensions"]["code"])
                    continue
                state = body["data"]["updateJobProgress"]
                if status:
                    completed_at.append(state)
                else:
                    accepted.append(progress)
                    assert state["progress"] == progress
                # Any read after an accepted report shows at least that progress.
                assert (await client.get(job_url)).json()["progress"] >= state["progress"]

        reading = asyncio.create_task(reader())
        await asyncio.gather(*(worker(index) for index in range(TASKS)))
        stop_reading.set()
        await reading

        final = (await client.get(job_url)).json()

    assert len(accepted) + len(completed_at) + len(refused) == TASKS * REPORTS_PER_TASK
    assert set(refused) <= {"CONFLICT"}, set(refused)
    assert accepted, "some reports should have been accepted before the job completed"
    assert observed == sorted(observed), "a reader saw progress go backwards"
    # The completion was accepted exactly once; nothing changed the job after it.
    assert len(completed_at) == 1
    assert final["status"] == 1 and final["progress"] == 100
    assert final["updated_at"] == completed_at[0]["updatedAt"]
