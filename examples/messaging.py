"""Messages and events: a workflow waits for a payment message and publishes its progress.

    python examples/messaging.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server. ``send`` delivers a message
to a workflow exactly once, even if the workflow crashes while waiting for it; events are
key-value pairs a workflow publishes and anyone can read, waiting until they are set.
"""

from __future__ import annotations

import asyncio
import uuid

from dbos_async import DBOS, SetWorkflowID


@DBOS.workflow()
async def checkout(order: str) -> str:
    await DBOS.set_event_async("status", "awaiting payment")
    payment = await DBOS.recv_async("payment", timeout_seconds=30)  # a durable wait
    if payment is None:
        await DBOS.set_event_async("status", "cancelled: no payment")
        return f"{order} cancelled"
    await DBOS.set_event_async("status", f"paid {payment['amount']} by {payment['method']}")
    return f"{order} shipped"


async def main() -> None:
    DBOS(config={"name": "messaging"})
    await DBOS.launch_async()
    try:
        order_id = f"order-{uuid.uuid4().hex[:8]}"
        with SetWorkflowID(order_id):
            handle = await DBOS.start_workflow_async(checkout, order_id)
        # get_event waits until the workflow has set the event (or the timeout passes).
        print("status:", await DBOS.get_event_async(order_id, "status", timeout_seconds=10))

        # Anyone who knows the workflow ID can message it: another workflow, a web handler,
        # a DBOSClient in another process.
        await DBOS.send_async(order_id, {"amount": 42, "method": "card"}, topic="payment")
        print("result:", await handle.get_result())
        print("status:", await DBOS.get_event_async(order_id, "status"))
        print("all events:", await DBOS.get_all_events_async(order_id))
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
