"""DBOSClient: drive workflows from a process that runs none (a web server, a script, a notebook).

    python examples/client.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server. The script starts a copy of
itself as the worker (``python examples/client.py worker``: a launched DBOS that serves the
``orders`` queue); this process then only holds a client: it enqueues by name, reads an
event, sends a message and waits for the result, through the system database alone.
"""

from __future__ import annotations

import asyncio
import sys

from dbos_async import DBOS, DBOSClient, Queue

Queue("orders")


@DBOS.workflow()
async def process_order(order: str) -> str:
    await DBOS.set_event_async("stage", "waiting for an address")
    address = await DBOS.recv_async("address", timeout_seconds=30)
    return f"{order} shipped to {address}"


async def worker() -> None:
    DBOS(config={"name": "shop"})
    await DBOS.launch_async()
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # serve until the client closes our stdin
    finally:
        await DBOS.destroy_async()


async def main() -> None:
    fleet = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert fleet.stdin is not None and fleet.stdout is not None
    try:
        print("worker:", (await asyncio.wait_for(fleet.stdout.readline(), 30)).decode().strip())
        async with DBOSClient(application_name="shop") as client:
            handle = await client.enqueue_async(
                {"workflow_name": "process_order", "queue_name": "orders"}, "order-7"
            )
            print("enqueued:", handle.workflow_id)
            print("stage:", await client.get_event_async(handle.workflow_id, "stage", 30))
            await client.send_async(handle.workflow_id, "12 Rue de Rivoli", topic="address")
            print("result:", await handle.get_result())
            status = await handle.get_status()
            print("status:", status.status if status else None)
    finally:
        fleet.stdin.close()
        print("worker exited with", await asyncio.wait_for(fleet.wait(), 30))


if __name__ == "__main__":
    asyncio.run(worker() if sys.argv[1:] == ["worker"] else main())
