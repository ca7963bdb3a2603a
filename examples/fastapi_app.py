"""Durable workflows behind a FastAPI app: stop the server mid-order, start it again, it finishes.

    .venv/bin/pip install -e ".[embedded,fastapi]" && .venv/bin/python examples/fastapi_app.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server (and PORT=... for another
port than 8000). Then, in another terminal:

    curl -X POST localhost:8000/orders/order-1             # runs the workflow, answers its result
    curl -X POST localhost:8000/orders/order-2/background  # starts it, answers its ID at once
    curl localhost:8000/workflows/order-2                  # its status: PENDING, then SUCCESS
    curl -X POST -H "dbos-idempotency-key: pay-3" localhost:8000/orders/order-3  # twice: runs once

Start an order in the background and press Ctrl-C within two seconds: the order stays PENDING.
Run the server again: it resumes the order at startup, and step 1 does not run a second time.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException

from dbos_async import DBOS, SetWorkflowID

app = FastAPI()
# Launches DBOS when the server starts (resuming any order a previous run left unfinished)
# and stops it when the server stops.
DBOS(fastapi=app, config={"name": "fastapi-example"})


@DBOS.step()
async def reserve_seat(order: str) -> str:
    print(f"  step 1: seat reserved for {order}")
    return "seat-12A"


@DBOS.step()
async def charge_card(order: str) -> str:
    await asyncio.sleep(2)  # a slow payment provider: time to stop the server mid-order
    print(f"  step 2: card charged for {order}")
    return f"receipt-{order}"


@DBOS.workflow()
async def book_flight(order: str) -> dict[str, str]:
    seat = await reserve_seat(order)
    receipt = await charge_card(order)
    return {"order": order, "seat": seat, "receipt": receipt, "workflow_id": DBOS.workflow_id or ""}


@app.post("/orders/{order}")
async def book(order: str) -> dict[str, str]:
    """Run the workflow and answer its result (a dbos-idempotency-key header is its ID)."""
    return await book_flight(order)


@app.post("/orders/{order}/background")
async def book_in_background(order: str) -> dict[str, str]:
    """Start the workflow, with the order as its ID, and answer at once."""
    with SetWorkflowID(order):
        handle = await DBOS.start_workflow_async(book_flight, order)
    return {"workflow_id": handle.workflow_id}


@app.get("/workflows/{workflow_id}")
async def workflow_status(workflow_id: str) -> dict[str, Any]:
    status = await DBOS.get_workflow_status_async(workflow_id)
    if status is None:
        raise HTTPException(status_code=404, detail=f"no workflow {workflow_id}")
    return {"workflow_id": workflow_id, "status": status.status, "output": status.output}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
