"""A durable workflow in twenty lines: run it, kill it mid-way with Ctrl-C, run it again.

    python examples/hello.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server.
"""

from __future__ import annotations

import asyncio

from dbos_async import DBOS, SetWorkflowID


@DBOS.step()
async def reserve_seat(order: str) -> str:
    print(f"  step 1: seat reserved for {order}")
    return "seat-12A"


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.1)
async def charge_card(order: str, amount: int) -> str:
    print(f"  step 2: charged {amount} for {order}")
    return f"receipt-{order}"


@DBOS.workflow()
async def book_flight(order: str, amount: int) -> dict[str, str]:
    seat = await reserve_seat(order)
    receipt = await charge_card(order, amount)
    return {"order": order, "seat": seat, "receipt": receipt, "workflow": DBOS.workflow_id or ""}


async def main() -> None:
    DBOS(config={"name": "hello"})
    await DBOS.launch_async()  # also resumes any booking a previous run left unfinished
    try:
        with SetWorkflowID("booking-order-1"):
            result = await book_flight("order-1", 420)
        print("booked:", result)
        # Running the same workflow ID again returns the recorded result: no step runs twice.
        with SetWorkflowID("booking-order-1"):
            again = await book_flight("order-1", 420)
        print("same ID again, steps not re-run:", again == result)
        status = await DBOS.get_workflow_status_async("booking-order-1")
        print("status:", status.status if status else None)
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
