"""A FastAPI app for the web-server acceptance tests, served by uvicorn in a subprocess.

Run as ``python -m uvicorn tests.acceptance.apps.fastapi_app:app --port N`` from the project
root. ``DBOS(fastapi=app)`` launches DBOS in uvicorn's lifespan (recovering this executor's
unfinished workflows) and stops it at shutdown.

The app's own lifespan prints ``STARTED`` at startup and ``STOPPED`` at shutdown; DBOS launches
after the first and stops before the second. Routes:

* ``GET /health``: ``{"pid": <this process's pid>}`` once the server answers.
* ``POST /orders/{order_id}?amount=&gated=``: awaits ``checkout``, a workflow of steps that each
  record their execution in ``public.web_step_runs``; with ``gated=true`` its second step waits
  until the test inserts ``order_id`` into ``public.web_gates``. Returns the workflow's result,
  which includes its workflow ID (the ``dbos-idempotency-key`` header, when sent).
* ``POST /waiters``: starts ``wait_for_message`` in the background and returns its ID; the
  workflow records a step, waits in ``recv_async("go")``, then records another step.
* ``POST /messages/{workflow_id}``: sends the JSON body to the workflow on topic ``"go"``.
* ``GET /workflows/{workflow_id}``: its status; ``.../result``: awaits and returns its result.
* ``GET /request/items/{item}``: the fields of ``DBOS.request``, in the handler and as seen by a
  workflow the handler calls.
* ``GET /admin/report``: a workflow that requires the role ``admin`` or ``auditor``; the
  authentication comes from the ``x-user`` and ``x-roles`` (comma-separated) headers.

Environment: ``APP_DB_URL`` (system database, whose ``public`` schema holds the side tables the
test creates).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Body, FastAPI, Header

from dbos_async import DBOS, DBOSContextSetAuth
from dbos_async._core._request import Request

DB_URL = os.environ["APP_DB_URL"]
GATE_POLL_SECONDS = 0.02
RECV_TIMEOUT_SECONDS = 120.0


@asynccontextmanager
async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's own lifespan: DBOS launches after its startup and stops before its shutdown.
    Prints ``STARTED`` and ``STOPPED``."""
    print("STARTED", flush=True)
    yield
    print("STOPPED", flush=True)


app = FastAPI(lifespan=app_lifespan)
DBOS(
    fastapi=app,
    config={
        "name": "web-fastapi-acceptance",
        "system_database_url": DB_URL,
        "sys_db_pool_size": 4,
        "application_version": "web-acceptance-v1",
    },
)


async def record(step: str) -> None:
    """A step's side effect: one row in ``web_step_runs`` naming the workflow, step and pid.

    It opens its own connection per call, to keep the app free of shared state.
    """
    conn = await asyncpg.connect(DB_URL)
    try:
        await conn.execute(
            "INSERT INTO web_step_runs (workflow_id, step, pid) VALUES ($1, $2, $3)",
            DBOS.workflow_id,
            step,
            os.getpid(),
        )
    finally:
        await conn.close()


@DBOS.step()
async def reserve(order_id: str) -> str:
    await record("reserve")
    return f"seat-for-{order_id}"


@DBOS.step()
async def wait_for_gate(order_id: str) -> None:
    """Wait until the test opens this order's gate (a row in ``web_gates``), then record."""
    conn = await asyncpg.connect(DB_URL)
    try:
        while True:
            if await conn.fetchval("SELECT 1 FROM web_gates WHERE name = $1", order_id):
                break
            await asyncio.sleep(GATE_POLL_SECONDS)
    finally:
        await conn.close()
    await record("gate")


@DBOS.step()
async def charge(order_id: str, amount: int) -> str:
    await record("charge")
    return f"receipt-{order_id}-{amount}"


@DBOS.workflow()
async def checkout(order_id: str, amount: int, gated: bool) -> dict[str, Any]:
    seat = await reserve(order_id)
    if gated:
        await wait_for_gate(order_id)
    receipt = await charge(order_id, amount)
    return {"workflow_id": DBOS.workflow_id, "seat": seat, "receipt": receipt}


@DBOS.step()
async def before_recv() -> None:
    await record("before_recv")


@DBOS.step()
async def after_recv(message: Any) -> None:
    await record("after_recv")


@DBOS.workflow()
async def wait_for_message() -> dict[str, Any]:
    await before_recv()
    message = await DBOS.recv_async("go", timeout_seconds=RECV_TIMEOUT_SECONDS)
    await after_recv(message)
    return {"message": message}


def _request_fields(request: Request | None) -> dict[str, Any]:
    assert request is not None, "DBOS.request is None"
    return {
        "method": request.method,
        "url": request.url,
        "base_url": request.base_url,
        "path": request.path,
        "headers": dict(request.headers),
        "query_params": dict(request.query_params),
        "path_params": dict(request.path_params),
        "cookies": dict(request.cookies),
        "client": [request.client.host, request.client.port] if request.client else None,
        "request_id": request.request_id,
    }


@DBOS.workflow()
async def request_seen_by_workflow() -> dict[str, Any]:
    request = DBOS.request
    assert request is not None
    return {"request_id": request.request_id, "path": request.path}


@DBOS.required_roles(["admin", "auditor"])
@DBOS.workflow()
async def admin_report() -> dict[str, Any]:
    return {
        "user": DBOS.authenticated_user,
        "roles": DBOS.authenticated_roles,
        "assumed_role": DBOS.assumed_role,
    }


@app.get("/health")
async def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.post("/orders/{order_id}")
async def place_order(order_id: str, amount: int = 10, gated: bool = False) -> dict[str, Any]:
    return await checkout(order_id, amount, gated)


@app.post("/waiters")
async def start_waiter() -> dict[str, str]:
    handle = await DBOS.start_workflow_async(wait_for_message)
    return {"workflow_id": handle.workflow_id}


@app.post("/messages/{workflow_id}")
async def send_message(workflow_id: str, message: Annotated[Any, Body()]) -> dict[str, bool]:
    await DBOS.send_async(workflow_id, message, "go")
    return {"sent": True}


@app.get("/workflows/{workflow_id}")
async def workflow_status(workflow_id: str) -> dict[str, str | None]:
    status = await DBOS.get_workflow_status_async(workflow_id)
    return {"status": status.status if status is not None else None}


@app.get("/workflows/{workflow_id}/result")
async def workflow_result(workflow_id: str) -> Any:
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    return await handle.get_result()


@app.get("/request/items/{item}")
async def request_fields(item: str) -> dict[str, Any]:
    return {
        "handler": _request_fields(DBOS.request),
        "workflow": await request_seen_by_workflow(),
    }


@app.get("/admin/report")
async def report(
    x_user: Annotated[str | None, Header()] = None, x_roles: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    roles = [role for role in (x_roles or "").split(",") if role]
    with DBOSContextSetAuth(x_user, roles):
        return await admin_report()
