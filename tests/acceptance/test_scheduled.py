"""Cron schedules across processes: every tick runs exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from dbos_async import DBOSClient
from tests.acceptance._processes import Child, Children, child_env

pytestmark = pytest.mark.acceptance


async def empty_ticks_table(database_url: str) -> None:
    """The side table the app's runs record (tick, pid, kind) in, emptied."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS public.ticks "
            "(tick timestamptz NOT NULL, pid int NOT NULL, kind text)"
        )
        await conn.execute("TRUNCATE public.ticks")
    finally:
        await conn.close()


async def three_workers(children: Children, database_url: str, seconds: int) -> list[Child]:
    """Three processes of the app, launched, each running for ``seconds``."""
    workers = [
        await children.spawn(
            "scheduled_app.py",
            env=child_env(database_url, EXECUTOR_ID=f"worker-{i}", RUN_SECONDS=str(seconds)),
        )
        for i in range(3)
    ]
    for worker in workers:
        await worker.read_until("READY")
    return workers


async def ticks_of(database_url: str, kind: str) -> Counter[object]:
    """How many runs recorded each tick of ``kind``."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tick FROM public.ticks WHERE kind = $1", kind)
    finally:
        await conn.close()
    return Counter(row["tick"] for row in rows)


async def test_three_processes_run_each_tick_once(database_url: str, tmp_path: Path) -> None:
    """Three processes schedule the same every-second workflow; no tick runs twice."""
    await empty_ticks_table(database_url)
    async with Children(tmp_path) as children:
        for worker in await three_workers(children, database_url, 4):
            assert await worker.exit_code() == 0, worker.describe()
    per_tick = await ticks_of(database_url, "declared")
    assert len(per_tick) >= 3, per_tick
    assert max(per_tick.values()) == 1, per_tick
    conn = await asyncpg.connect(database_url)
    try:
        statuses = await conn.fetch(
            "SELECT DISTINCT status FROM dbos.workflow_status WHERE workflow_uuid LIKE 'sched-%'"
        )
    finally:
        await conn.close()
    assert {row["status"] for row in statuses} <= {"SUCCESS", "ENQUEUED", "PENDING"}


async def test_a_schedule_a_client_creates_runs_in_every_process_once_per_tick(
    database_url: str, tmp_path: Path
) -> None:
    """Three processes are running; a client creates an every-second schedule: its ticks start
    without a restart, each runs once with the schedule's context."""
    await empty_ticks_table(database_url)
    async with Children(tmp_path) as children:
        workers = await three_workers(children, database_url, 6)
        async with DBOSClient(system_database_url=database_url) as client:
            await client.create_schedule_async(
                schedule_name="from-client",
                workflow_name="dynamic_tick",
                schedule="* * * * * *",
                context="dynamic",
                application_name="scheduled-app",
            )
            for _ in range(200):  # 20 s at most
                if len(await client.list_workflows_async(schedule_name="from-client")) >= 3:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the client's schedule did not fire three times")
            await client.pause_schedule_async("from-client")
        for worker in workers:
            assert await worker.exit_code() == 0, worker.describe()
    per_tick = await ticks_of(database_url, "dynamic")
    assert len(per_tick) >= 3, per_tick
    assert max(per_tick.values()) == 1, per_tick
