"""A Flask app for the web-server acceptance tests, served by gunicorn in a subprocess.

Run as ``python -m gunicorn -w 1 -b 127.0.0.1:N tests.acceptance.apps.flask_app:app`` from the
project root. The app never calls ``DBOS.launch()``: ``DBOS(flask=app)`` launches DBOS (on a
background loop thread) at the first request, inside the gunicorn worker after the fork.

Routes:

* ``GET /health``: ``{"pid": <the worker's pid>}``.
* ``POST /orders/<order_id>/start``: starts the sync workflow ``fulfil_order`` with
  ``DBOS.start_workflow`` and returns its ID at once (the ``dbos-idempotency-key`` header, when
  sent); the workflow's two steps each record their execution in the side-effect log.
* ``POST /greetings/<name>``: the route is itself a ``@DBOS.workflow()``; its one step records
  its execution. It returns the greeting, its workflow ID and ``DBOS.request.request_id``.
* ``GET /workflows/<workflow_id>``: its status; ``.../result``: waits for and returns its result.

Environment: ``APP_DB_URL`` (system database), ``APP_SIDE_EFFECT_LOG`` (a file every step
appends ``<workflow_id> <step> <pid>`` to, fsynced).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from dbos_async import DBOS

DB_URL = os.environ["APP_DB_URL"]
SIDE_EFFECT_LOG = os.environ["APP_SIDE_EFFECT_LOG"]

app = Flask(__name__)
DBOS(
    flask=app,
    config={
        "name": "web-flask-acceptance",
        "system_database_url": DB_URL,
        "sys_db_pool_size": 4,
        "application_version": "web-flask-v1",
    },
)


def record(step: str) -> None:
    """A step's side effect: one durable line in the side-effect log."""
    fd = os.open(SIDE_EFFECT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{DBOS.workflow_id} {step} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@DBOS.step()
def pack(order_id: str) -> str:
    record("pack")
    return f"parcel-{order_id}"


@DBOS.step()
def ship(parcel: str) -> str:
    record("ship")
    return f"tracking-{parcel}"


@DBOS.workflow()
def fulfil_order(order_id: str) -> dict[str, Any]:
    parcel = pack(order_id)
    tracking = ship(parcel)
    return {"order": order_id, "parcel": parcel, "tracking": tracking}


@DBOS.step()
def compose_greeting(name: str) -> str:
    record("greet")
    return f"Hello, {name}!"


@app.get("/health")
def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.post("/orders/<order_id>/start")
def start_order(order_id: str) -> dict[str, str]:
    handle = DBOS.start_workflow(fulfil_order, order_id)
    return {"workflow_id": handle.workflow_id}


@app.route("/greetings/<name>", methods=["POST"])
@DBOS.workflow()
def greet(name: str) -> dict[str, Any]:
    request = DBOS.request
    return {
        "greeting": compose_greeting(name),
        "workflow_id": DBOS.workflow_id,
        "request_id": request.request_id if request is not None else None,
    }


@app.get("/workflows/<workflow_id>")
def workflow_status(workflow_id: str) -> dict[str, str | None]:
    status = DBOS.get_workflow_status(workflow_id)
    return {"status": status.status if status is not None else None}


@app.get("/workflows/<workflow_id>/result")
def workflow_result(workflow_id: str) -> Any:
    return DBOS.retrieve_workflow(workflow_id).get_result()
