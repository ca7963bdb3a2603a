"""Cron schedules across processes: every tick runs exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance._processes import Children, child_env


@pytest.mark.acceptance
async def test_three_processes_run_each_tick_once(database_url: str, tmp_path: Path) -> None:
    """Three processes schedule the same every-second workflow; no tick runs twice."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TABLE public.ticks (tick timestamptz NOT NULL, pid int NOT NULL)"
        )
    finally:
        await conn.close()
    async with Children(tmp_path) as children:
        workers = [
            await children.spawn(
                "scheduled_app.py",
                env=child_env(database_url, EXECUTOR_ID=f"worker-{i}", RUN_SECONDS="4"),
            )
            for i in range(3)
        ]
        for worker in workers:
            await worker.read_until("READY")
        for worker in workers:
            assert await worker.exit_code() == 0, worker.describe()
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tick, pid FROM public.ticks")
        statuses = await conn.fetch(
            "SELECT status, count(*) AS n FROM dbos.workflow_status "
            "WHERE workflow_uuid LIKE 'sched-%' GROUP BY status"
        )
    finally:
        await conn.close()
    per_tick = Counter(row["tick"] for row in rows)
    assert len(per_tick) >= 3, rows
    assert max(per_tick.values()) == 1, per_tick
    assert {row["status"] for row in statuses} <= {"SUCCESS", "ENQUEUED", "PENDING"}
