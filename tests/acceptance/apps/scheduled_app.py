"""A scheduled workflow firing every second, run by several processes at once.

Each run records (tick, pid, kind) in a side table: ``declared`` for the ``@DBOS.scheduled``
workflow, the schedule's context for ``dynamic_tick`` (which a test schedules at runtime with
``create_schedule``). Env: APP_DB_URL, EXECUTOR_ID, RUN_SECONDS. Prints READY once launched;
exits after RUN_SECONDS.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

import asyncpg

from dbos_async import DBOS

DB_URL = os.environ["APP_DB_URL"]


@DBOS.step()
async def record_tick(tick: datetime, kind: str) -> None:
    conn = await asyncpg.connect(DB_URL)
    try:
        await conn.execute(
            "INSERT INTO public.ticks (tick, pid, kind) VALUES ($1, $2, $3)",
            tick,
            os.getpid(),
            kind,
        )
    finally:
        await conn.close()


@DBOS.scheduled("* * * * * *")
@DBOS.workflow()
async def every_second(scheduled_time: datetime, actual_time: datetime) -> None:
    await record_tick(scheduled_time, "declared")


@DBOS.workflow()
async def dynamic_tick(scheduled_time: datetime, context: str) -> None:
    await record_tick(scheduled_time, context)


async def main() -> None:
    DBOS(
        config={
            "name": "scheduled-app",
            "system_database_url": DB_URL,
            "executor_id": os.environ["EXECUTOR_ID"],
            "application_version": "scheduled-v1",
            "sys_db_pool_size": 4,
        }
    )
    await DBOS.launch_async()
    print("READY", flush=True)
    await asyncio.sleep(float(os.environ["RUN_SECONDS"]))  # the workload's duration
    await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
