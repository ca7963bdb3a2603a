"""Starlette and FastAPI in process: lifespan, request context, idempotency, errors and spans.

The apps run their real lifespan (``app.router.lifespan_context``) on the test's loop and are
driven through httpx's ASGI transport; servers in subprocesses are in the acceptance tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Header
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from dbos_async import (
    DBOS,
    DBOSContextSetAuth,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
)
from dbos_async.integrations import DBOSASGIMiddleware
from tests.conftest import make_config
from tests.integration._web import request_view

executions: list[str] = []


@DBOS.step()
async def record_execution(name: str) -> None:
    executions.append(name)


@DBOS.workflow()
async def order_workflow(item: str) -> dict[str, Any]:
    await record_execution(item)
    return {"workflow_id": DBOS.workflow_id, "item": item, "seen": request_view()}


@DBOS.workflow()
async def waits_for_ship(item: str) -> str:
    return f"{item}: {await DBOS.recv_async('ship', timeout_seconds=30)}"


@DBOS.step()
def record_sync_execution(name: str) -> None:
    executions.append(f"sync {name}")


@DBOS.workflow()
def sync_order_workflow(item: str) -> dict[str, Any]:
    record_sync_execution(item)
    return {"workflow_id": DBOS.workflow_id, "seen": request_view()}


@DBOS.required_roles(["admin"])
@DBOS.workflow()
async def admin_report() -> str | None:
    return DBOS.assumed_role


def build_fastapi() -> FastAPI:
    app = FastAPI()

    @app.post("/orders/{item}")
    async def place(item: str) -> dict[str, Any]:
        return await order_workflow(item)

    @app.post("/sync-orders/{item}")
    def place_sync(item: str) -> dict[str, Any]:  # FastAPI runs it on its thread pool
        return sync_order_workflow(item)

    @app.post("/background/{item}")
    async def background(item: str) -> dict[str, str]:
        handle = await DBOS.start_workflow_async(waits_for_ship, item)
        return {"workflow_id": handle.workflow_id}

    @app.get("/request/{name}")
    async def show_request(name: str) -> dict[str, Any]:
        return request_view()

    @app.get("/report")
    async def report(x_roles: str = Header(default="")) -> dict[str, Any]:
        with DBOSContextSetAuth("web-user", [r for r in x_roles.split(",") if r]):
            return {"role": await admin_report()}

    @app.get("/missing")
    async def missing() -> None:
        await DBOS.get_result_async("no-such-workflow")

    return app


@pytest.fixture
async def fastapi_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A FastAPI app with ``DBOS(fastapi=app)``, its lifespan running, and a client for it."""
    executions.clear()
    app = build_fastapi()
    DBOS(fastapi=app, config=make_config(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4567))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    assert DBOS._runtime is None  # the lifespan stopped what it launched


async def test_the_lifespan_runs_dbos_on_the_servers_loop(
    fastapi_client: httpx.AsyncClient,
) -> None:
    runtime = DBOS._runtime
    assert runtime is not None
    assert runtime.loop is asyncio.get_running_loop()
    assert DBOS._loop_thread is None  # no background loop thread


async def test_request_id_is_read_or_generated_and_returned(
    fastapi_client: httpx.AsyncClient,
) -> None:
    given = await fastapi_client.get("/request/a", headers={"x-request-id": "req-42"})
    assert given.headers["x-request-id"] == "req-42"
    assert given.json()["request_id"] == "req-42"
    alternate = await fastapi_client.get("/request/a", headers={"dbos-request-id": "req-43"})
    assert alternate.headers["x-request-id"] == "req-43"
    generated = await fastapi_client.get("/request/a")
    assert generated.headers["x-request-id"] == generated.json()["request_id"]
    assert len(generated.json()["request_id"]) == 36


async def test_dbos_request_describes_the_request_in_handler_and_workflow(
    fastapi_client: httpx.AsyncClient,
) -> None:
    fastapi_client.cookies.set("session", "s1")
    handler = (await fastapi_client.get("/request/bob?page=2", headers={"x-custom": "c"})).json()
    assert handler == {
        "request_id": handler["request_id"],
        "method": "GET",
        "url": "http://testserver/request/bob?page=2",
        "base_url": "http://testserver/",
        "path": "/request/bob",
        "path_params": {"name": "bob"},
        "query_params": {"page": "2"},
        "cookies": {"session": "s1"},
        "client": "10.1.2.3",
        "header": "c",
    }
    placed = await fastapi_client.post(
        "/orders/lamp?color=red", headers={"x-request-id": "req-7", "x-custom": "w"}
    )
    seen = placed.json()["seen"]
    assert (seen["request_id"], seen["method"], seen["path"]) == ("req-7", "POST", "/orders/lamp")
    assert seen["path_params"] == {"item": "lamp"}
    assert seen["query_params"] == {"color": "red"}
    assert seen["header"] == "w"


async def test_the_idempotency_key_makes_a_retried_post_run_once(
    fastapi_client: httpx.AsyncClient,
) -> None:
    headers = {"dbos-idempotency-key": "order-123"}
    first = await fastapi_client.post("/orders/chair", headers=headers)
    retried = await fastapi_client.post("/orders/chair", headers=headers)
    assert first.status_code == retried.status_code == 200
    assert first.json()["workflow_id"] == retried.json()["workflow_id"] == "order-123"
    assert first.json() == retried.json()
    assert executions == ["chair"]
    other = await fastapi_client.post("/orders/chair")
    assert other.json()["workflow_id"] != "order-123"
    assert executions == ["chair", "chair"]


async def test_a_sync_route_calls_a_sync_workflow_on_the_servers_loop(
    fastapi_client: httpx.AsyncClient,
) -> None:
    headers = {"dbos-idempotency-key": "sync-1", "x-request-id": "r-sync"}
    first = await fastapi_client.post("/sync-orders/desk", headers=headers)
    again = await fastapi_client.post("/sync-orders/desk", headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["workflow_id"] == "sync-1"
    assert first.json()["seen"]["request_id"] == "r-sync"
    assert first.json()["seen"]["path_params"] == {"item": "desk"}
    assert executions == ["sync desk"]


async def test_dbos_errors_become_json_responses(fastapi_client: httpx.AsyncClient) -> None:
    denied = await fastapi_client.get("/report", headers={"x-roles": "user"})
    assert denied.status_code == 403
    body = denied.json()
    assert body["dbos_error"] == "DBOSNotAuthorizedError"
    assert body["dbos_error_code"] == "8"
    assert "admin" in body["message"]
    allowed = await fastapi_client.get("/report", headers={"x-roles": "user,admin"})
    assert allowed.status_code == 200 and allowed.json() == {"role": "admin"}
    missing = await fastapi_client.get("/missing")
    assert missing.status_code == DBOSNonExistentWorkflowError("x").status_code
    assert missing.json()["dbos_error"] == "DBOSNonExistentWorkflowError"


async def test_shutdown_leaves_waiting_workflows_to_recovery(database_url: str) -> None:
    app = build_fastapi()
    DBOS(fastapi=app, config=make_config(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ids = [
                (await client.post(f"/background/box{i}")).json()["workflow_id"] for i in range(3)
            ]
    assert DBOS._runtime is None
    conn = await asyncpg.connect(database_url)
    try:
        statuses = await conn.fetch(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = ANY($1)", ids
        )
    finally:
        await conn.close()
    assert [row["status"] for row in statuses] == ["PENDING"] * 3
    # The next run recovers them.
    app = build_fastapi()
    DBOS(fastapi=app, config=make_config(database_url))
    async with app.router.lifespan_context(app):
        for workflow_id in ids:
            await DBOS.send_async(workflow_id, "shipped", "ship")
        results = [await DBOS.get_result_async(workflow_id) for workflow_id in ids]
    assert results == [f"box{i}: shipped" for i in range(3)]


async def test_a_composed_lifespan_uses_dbos_lifespan(database_url: str) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with DBOS.lifespan(app):
            events.append(f"launched: {DBOS._runtime is not None}")
            yield
        events.append(f"stopped: {DBOS._runtime is None}")

    async def place(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(await order_workflow(request.path_params["item"]))

    app = Starlette(routes=[Route("/orders/{item}", place, methods=["POST"])], lifespan=lifespan)
    app.add_middleware(DBOSASGIMiddleware)
    DBOS(config=make_config(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/orders/pen", headers={"dbos-idempotency-key": "k"})
    assert response.json()["workflow_id"] == "k"
    assert response.json()["seen"]["path_params"] == {"item": "pen"}
    assert events == ["launched: True", "stopped: True"]


async def test_dbos_starlette_keeps_the_apps_own_lifespan(database_url: str) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def own_lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append(f"app start, DBOS launched: {DBOS._runtime is not None}")
        yield {"greeting": "hi"}
        events.append(f"app stop, DBOS stopped: {DBOS._runtime is None}")

    async def hello(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting})

    app = Starlette(routes=[Route("/", hello)], lifespan=own_lifespan)
    DBOS(starlette=app, config=make_config(database_url))
    async with app.router.lifespan_context(app) as state:
        assert state == {"greeting": "hi"}
        assert DBOS._runtime is not None
    # As in DBOS Transact: the app's startup first (recovered workflows may need what it opens),
    # and DBOS stops before the app's shutdown closes it.
    assert events == ["app start, DBOS launched: False", "app stop, DBOS stopped: True"]


async def test_the_middleware_answers_dbos_errors_of_a_bare_asgi_app(
    dbos: type[DBOS],
) -> None:
    async def bare_app(scope: Any, receive: Any, send: Any) -> None:
        await DBOS.get_result_async("nobody")

    transport = httpx.ASGITransport(app=DBOSASGIMiddleware(bare_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/x", headers={"x-request-id": "r1"})
    assert response.status_code == 500
    assert response.json()["dbos_error"] == "DBOSNonExistentWorkflowError"
    assert response.headers["x-request-id"] == "r1"


async def test_the_handler_span_encloses_the_workflow_span(
    fastapi_client: httpx.AsyncClient, span_exporter: Any
) -> None:
    span_exporter.clear()
    response = await fastapi_client.post("/orders/cup", headers={"x-request-id": "traced"})
    assert response.status_code == 200
    finished = {span.name: span for span in span_exporter.get_finished_spans()}
    handler, workflow = finished["/orders/cup"], finished["order_workflow"]
    attributes = dict(handler.attributes or {})
    assert attributes["operationType"] == "handler"
    assert attributes["requestID"] == "traced"
    assert attributes["requestMethod"] == "POST"
    assert attributes["requestURL"] == "http://testserver/orders/cup"
    assert attributes["requestIP"] == "10.1.2.3"
    assert attributes["responseCode"] == 200
    # The workflow's span descends from the handler's (FastAPI adds spans of its own between).
    parents = {
        span.context.span_id: span.parent.span_id if span.parent is not None else None
        for span in span_exporter.get_finished_spans()
    }
    ancestor = parents[workflow.context.span_id]
    while ancestor is not None and ancestor != handler.context.span_id:
        ancestor = parents.get(ancestor)
    assert ancestor == handler.context.span_id
    assert dict(workflow.attributes or {})["requestID"] == "traced"


def test_only_web_apps_can_be_hooked(database_url: str) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="not a Starlette or FastAPI"):
        DBOS(fastapi=object(), config=make_config(database_url))
    with pytest.raises(DBOSInvalidArgumentError, match="not a Flask"):
        DBOS(flask=object(), config=make_config(database_url))
    assert DBOS._config is None  # nothing half-configured
