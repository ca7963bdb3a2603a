"""Durable workflows behind a Flask app: plain sync functions, checkpointed step by step.

    .venv/bin/pip install -e ".[embedded,flask]" && .venv/bin/python examples/flask_app.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server (and PORT=... for another
port than 8000). Then, in another terminal:

    curl -X POST localhost:8000/orders/order-1             # runs the workflow, answers its result
    curl -X POST localhost:8000/orders/order-2/background  # starts it, answers its ID at once
    curl localhost:8000/workflows/order-2                  # its status: PENDING, then SUCCESS
    curl -X POST -H "dbos-idempotency-key: pay-3" localhost:8000/orders/order-3  # twice: runs once

Under gunicorn (``gunicorn -w 1 -b 127.0.0.1:8000 examples.flask_app:app``) the worker launches
DBOS itself at its first request, after the fork. (Several workers on one database need distinct
executor IDs, ``DBOS__VMID``, so that each recovers only its own workflows.)
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, abort

from dbos_async import DBOS, SetWorkflowID

app = Flask(__name__)
DBOS(flask=app, config={"name": "flask-example"})


@DBOS.step()
def reserve_seat(order: str) -> str:
    print(f"  step 1: seat reserved for {order}")
    return "seat-12A"


@DBOS.step()
def charge_card(order: str) -> str:
    time.sleep(2)  # a slow payment provider
    print(f"  step 2: card charged for {order}")
    return f"receipt-{order}"


@DBOS.workflow()
def book_flight(order: str) -> dict[str, str]:
    seat = reserve_seat(order)
    receipt = charge_card(order)
    return {"order": order, "seat": seat, "receipt": receipt, "workflow_id": DBOS.workflow_id or ""}


@app.post("/orders/<order>")
def book(order: str) -> dict[str, str]:
    """Run the workflow and answer its result (a dbos-idempotency-key header is its ID)."""
    return book_flight(order)


@app.post("/orders/<order>/background")
def book_in_background(order: str) -> dict[str, str]:
    """Start the workflow, with the order as its ID, and answer at once."""
    with SetWorkflowID(order):
        handle = DBOS.start_workflow(book_flight, order)
    return {"workflow_id": handle.workflow_id}


@app.get("/workflows/<workflow_id>")
def workflow_status(workflow_id: str) -> dict[str, Any]:
    status = DBOS.get_workflow_status(workflow_id)
    if status is None:
        abort(404, f"no workflow {workflow_id}")
    return {"workflow_id": workflow_id, "status": status.status, "output": status.output}


if __name__ == "__main__":
    DBOS.launch()  # now rather than at the first request: resume unfinished orders at once
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
