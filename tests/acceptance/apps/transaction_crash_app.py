"""An app for the transaction crash test: a workflow whose transaction inserts an order.

``python transaction_crash_app.py start async|sync`` starts the workflow; the checkpoint of
the transaction (written to the system database after the application commit) is held back:
the process prints ``COMMITTED <workflow_id>`` and waits there to be SIGKILLed.
``python transaction_crash_app.py recover async|sync`` launches (which recovers the workflow),
waits for its result and prints ``RESULT <repr>``.

Environment: ``APP_DB_URL`` (system database), ``APP_APPLICATION_DB_URL`` (the application
database, with an ``orders`` table whose ``name`` is unique), ``APP_WORKFLOW_ID``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from sqlalchemy import text

import dbos_async._features._step as step_module
from dbos_async import DBOS, SetWorkflowID

WORKFLOW_ID = os.environ["APP_WORKFLOW_ID"]
CONFIG: dict[str, Any] = {
    "name": "transaction-crash-app",
    "system_database_url": os.environ["APP_DB_URL"],
    "application_database_url": os.environ["APP_APPLICATION_DB_URL"],
    "application_version": "transaction-crash-v1",
}


@DBOS.step()
async def price(order: str) -> int:
    return len(order) * 10


@DBOS.transaction()
async def record_order(order: str, amount: int) -> int:
    result = await DBOS.sql_session.execute(
        text("INSERT INTO orders (name, amount) VALUES (:name, :amount) RETURNING id"),
        {"name": order, "amount": amount},
    )
    return int(result.scalar_one())


@DBOS.workflow()
async def checkout(order: str) -> dict[str, int]:
    amount = await price(order)
    order_id = await record_order(order, amount)
    return {"order_id": order_id, "amount": amount}


@DBOS.transaction()
def record_order_sync(order: str, amount: int) -> int:
    row = DBOS.sql_session.execute(
        text("INSERT INTO orders (name, amount) VALUES (:name, :amount) RETURNING id"),
        {"name": order, "amount": amount},
    )
    return int(row.scalar_one())


@DBOS.workflow()
def checkout_sync(order: str) -> dict[str, int]:
    amount = len(order) * 10
    order_id = record_order_sync(order, amount)
    return {"order_id": order_id, "amount": amount}


def hold_back_transaction_checkpoints() -> None:
    """Stop at the checkpoint of a transaction, after its application commit, for the kill."""
    insert_step_output = vars(step_module)["insert_step_output"]

    async def held(db: Any, workflow_id: str, function_id: int, name: str, **kw: Any) -> bool:
        if name.startswith("record_order"):
            print(f"COMMITTED {workflow_id}", flush=True)
            await asyncio.Event().wait()  # never set: the process is killed here
        return bool(await insert_step_output(db, workflow_id, function_id, name, **kw))

    setattr(step_module, "insert_step_output", held)  # noqa: B010 - patched on purpose


def main(action: str, flavour: str) -> None:
    workflow = checkout if flavour == "async" else checkout_sync
    if action == "start":
        hold_back_transaction_checkpoints()
    DBOS(config=CONFIG)
    DBOS.launch()
    try:
        if action == "start":
            with SetWorkflowID(WORKFLOW_ID):
                DBOS.start_workflow(workflow, "order-7")
            asyncio.run(asyncio.Event().wait())  # killed while the workflow is held
        else:
            result = DBOS.retrieve_workflow(WORKFLOW_ID).get_result()
            print(f"RESULT {result!r}", flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
