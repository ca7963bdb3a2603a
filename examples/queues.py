"""Durable queues with flow control: concurrency, a rate limit, priorities and partitions.

    python examples/queues.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server. Every limit below holds
across all the processes sharing the database, not just this one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from dbos_async import DBOS, Queue, SetEnqueueOptions

two_at_a_time = Queue("two_at_a_time", concurrency=2)
three_per_second = Queue("three_per_second", limiter={"limit": 3, "period": 1.0})
by_priority = Queue("by_priority", concurrency=1, priority_enabled=True)
one_per_customer = Queue("one_per_customer", partition_concurrency=1)

running: Counter[str] = Counter()  # tasks running now, by group
most: Counter[str] = Counter()  # the most that ever ran at once, by group
order: list[str] = []


@DBOS.workflow()
async def task(group: str, name: str) -> float:
    running[group] += 1
    most[group] = max(most[group], running[group])
    order.append(name)
    await asyncio.sleep(0.2)
    running[group] -= 1
    return time.monotonic()


@DBOS.workflow()
async def hold_the_queue() -> None:
    await DBOS.recv_async("go", timeout_seconds=10)  # holds the one slot until told to go


async def main() -> None:
    DBOS(config={"name": "queues"})
    await DBOS.launch_async()
    try:
        handles = [await two_at_a_time.enqueue_async(task, "two", f"t{i}") for i in range(6)]
        await asyncio.gather(*(h.get_result() for h in handles))
        print(f"concurrency: 6 tasks, at most {most['two']} at once")

        start = time.monotonic()
        handles = [await three_per_second.enqueue_async(task, "rate", f"r{i}") for i in range(6)]
        ends = await asyncio.gather(*(h.get_result() for h in handles))
        print(f"rate limit: 6 tasks at 3 per second took {max(ends) - start:.1f}s")

        blocker = await by_priority.enqueue_async(hold_the_queue)
        handles = []
        for priority in (3, 1, 2):  # lower runs first
            with SetEnqueueOptions(priority=priority):
                handles.append(await by_priority.enqueue_async(task, "prio", f"{priority}"))
        order.clear()
        await DBOS.send_async(blocker.workflow_id, "now", topic="go")
        await asyncio.gather(*(h.get_result() for h in handles))
        print(f"priority: enqueued with priorities 3, 1, 2; ran in order {', '.join(order)}")

        start = time.monotonic()
        handles = []
        for customer in ("ada", "bob", "ada", "bob"):
            with SetEnqueueOptions(queue_partition_key=customer):
                handles.append(await one_per_customer.enqueue_async(task, customer, customer))
        ends = await asyncio.gather(*(h.get_result() for h in handles))
        print(
            f"partitions: at most {most['ada']} task per customer at once, customers in "
            f"parallel: 4 tasks of 0.2s took {max(ends) - start:.1f}s"
        )
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
