"""Schedules stored in the database: create one, watch it tick, trigger it, backfill it.

    python examples/schedules.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server. Every process of the
application runs the schedules, yet each tick runs once: its workflow ID is
``sched-<name>-<tick time>``. That is also why a backfill repeated runs nothing twice.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from dbos_async import DBOS

ticks: asyncio.Queue[datetime] = asyncio.Queue()  # the ticks this process runs, as they run
ran: list[datetime] = []  # and all of them


@DBOS.workflow()
async def heartbeat(scheduled_time: datetime, context: Any) -> str:
    ticks.put_nowait(scheduled_time)
    ran.append(scheduled_time)
    return f"{context['service']} checked at {scheduled_time:%H:%M:%S}"


async def main() -> None:
    DBOS(config={"name": "schedules"})
    await DBOS.launch_async()
    try:
        await DBOS.delete_schedule_async("every-second")  # left over if a run was interrupted
        await DBOS.create_schedule_async(
            schedule_name="every-second",
            workflow_fn=heartbeat,
            schedule="* * * * * *",  # six fields: seconds first
            context={"service": "billing"},
        )
        for _ in range(3):
            tick = await asyncio.wait_for(ticks.get(), timeout=10)
            print(f"tick: {tick:%H:%M:%S}")

        handle = await DBOS.trigger_schedule_async("every-second")  # once, now
        print("triggered:", await handle.get_result())

        # Run the ticks strictly between two times: three here. Run this script again and
        # the backfill finds them done (same workflow IDs): nothing runs twice.
        start = datetime(2025, 1, 1, 9, 0, 0, tzinfo=UTC)
        end = datetime(2025, 1, 1, 9, 0, 4, tzinfo=UTC)
        handles = await DBOS.backfill_schedule_async("every-second", start, end)
        results = [await h.get_result() for h in handles]
        ran_now = sum(start < tick < end for tick in ran)
        print(f"backfilled {len(results)} ticks ({ran_now} run by this run):", results)

        await DBOS.delete_schedule_async("every-second")
        print("schedules left:", [s["schedule_name"] for s in await DBOS.list_schedules_async()])
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
