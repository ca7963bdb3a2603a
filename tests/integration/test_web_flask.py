"""Flask in process (its test client through the WSGI middleware): launch on first request,
the seed pattern, a route that is a workflow, idempotency, request context and errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask
import pytest

from dbos_async import DBOS, DBOSContextSetAuth
from tests.conftest import make_config
from tests.integration._web import request_view

executions: list[str] = []


@DBOS.step()
def record_flask_execution(name: str) -> None:
    executions.append(name)


@DBOS.workflow()
def flask_ship(item: str) -> str:
    record_flask_execution(item)
    return f"shipped {item}"


@DBOS.workflow()
def flask_checkout(item: str) -> dict[str, Any]:
    """A Flask view that is itself a workflow."""
    record_flask_execution(item)
    return {"workflow_id": DBOS.workflow_id, "item": item, "seen": request_view()}


@DBOS.required_roles(["admin"])
@DBOS.workflow()
def flask_admin_report() -> str | None:
    return DBOS.assumed_role


def build_flask() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.post("/ship/<item>")
    def start_shipping(item: str) -> dict[str, str]:
        return {"workflow_id": DBOS.start_workflow(flask_ship, item).workflow_id}

    app.add_url_rule("/checkout/<item>", view_func=flask_checkout, methods=["POST"])

    @app.get("/request/<name>")
    def show_request(name: str) -> dict[str, Any]:
        return request_view()

    @app.get("/report")
    def report() -> dict[str, Any]:
        roles = [r for r in flask.request.headers.get("x-roles", "").split(",") if r]
        with DBOSContextSetAuth("web-user", roles):
            return {"role": flask_admin_report()}

    return app


@pytest.fixture
def client(database_url: str) -> Iterator[Any]:
    executions.clear()
    app = build_flask()
    DBOS(flask=app, config=make_config(database_url))
    try:
        yield app.test_client()
    finally:
        DBOS.destroy()


def test_the_first_request_launches_dbos(client: Any) -> None:
    assert DBOS._runtime is None
    response = client.post("/ship/kettle")
    assert response.status_code == 200
    assert DBOS._runtime is not None and DBOS._loop_thread is not None
    workflow_id = response.get_json()["workflow_id"]
    assert DBOS.get_result(workflow_id) == "shipped kettle"
    assert executions == ["kettle"]


def test_a_route_that_is_a_workflow_runs_once_per_idempotency_key(client: Any) -> None:
    headers = {"dbos-idempotency-key": "checkout-9", "x-request-id": "r-9"}
    first = client.post("/checkout/mug?gift=yes", headers=headers)
    retried = client.post("/checkout/mug?gift=yes", headers=headers)
    assert first.status_code == retried.status_code == 200
    assert first.get_json() == retried.get_json()
    body = first.get_json()
    assert body["workflow_id"] == "checkout-9"
    assert body["seen"]["path_params"] == {"item": "mug"}
    assert body["seen"]["query_params"] == {"gift": "yes"}
    assert body["seen"]["request_id"] == "r-9"
    assert first.headers["x-request-id"] == "r-9"
    assert executions == ["mug"]


def test_the_seed_pattern_with_an_idempotency_key(client: Any) -> None:
    headers = {"dbos-idempotency-key": "ship-1"}
    ids = {client.post("/ship/bowl", headers=headers).get_json()["workflow_id"] for _ in range(2)}
    assert ids == {"ship-1"}
    assert DBOS.get_result("ship-1") == "shipped bowl"
    assert executions == ["bowl"]


def test_dbos_request_in_a_flask_handler(client: Any) -> None:
    client.set_cookie("session", "s2")
    response = client.get("/request/ann?q=1", headers={"x-custom": "v"})
    view = response.get_json()
    assert response.headers["x-request-id"] == view["request_id"]
    assert view == {
        "request_id": view["request_id"],
        "method": "GET",
        "url": "http://localhost/request/ann?q=1",
        "base_url": "http://localhost/",
        "path": "/request/ann",
        "path_params": {"name": "ann"},
        "query_params": {"q": "1"},
        "cookies": {"session": "s2"},
        "client": "127.0.0.1",
        "header": "v",
    }


def test_a_denied_role_is_a_403_json_response(client: Any) -> None:
    denied = client.get("/report", headers={"x-roles": "user"})
    assert denied.status_code == 403
    assert denied.get_json()["dbos_error"] == "DBOSNotAuthorizedError"
    allowed = client.get("/report", headers={"x-roles": "admin"})
    assert allowed.status_code == 200 and allowed.get_json() == {"role": "admin"}
