"""Real web servers in subprocesses: FastAPI under uvicorn and Flask under gunicorn.

Each test serves an app (``apps/fastapi_app.py`` or ``apps/flask_app.py``) from a subprocess on a
free port of 127.0.0.1, on the test's system database, and talks to it with httpx as a client
would: retried POSTs with a ``dbos-idempotency-key``, request IDs, ``DBOS.request``, role checks.
The FastAPI server is also SIGKILLed while a request's workflow is blocked mid-way, and shut down
(SIGINT or SIGTERM, running the lifespan's shutdown) while workflows wait in ``recv``; a new server
finishes them. Steps record their executions (in a side table or a side-effect log), and the test
checks that each ran exactly once, and in which process. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ._processes import WAIT_SECONDS, Child, Children, child_env
from ._records import recorded_steps, workflow_row, workflow_rows

pytestmark = pytest.mark.acceptance

FASTAPI_APP = "tests.acceptance.apps.fastapi_app:app"
FLASK_APP = "tests.acceptance.apps.flask_app:app"
POLL_SECONDS = 0.02


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _until(what: str, condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition`` until it holds; fail after ``WAIT_SECONDS``."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                if await condition():
                    return
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        pytest.fail(f"not within {WAIT_SECONDS}s: {what}")


class Server:
    """A server child process and an HTTP client on it."""

    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.base_url = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=WAIT_SECONDS)

    async def serving(self) -> int:
        """Wait (bounded) until ``GET /health`` answers; the pid of the process serving it."""
        pid = 0
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as probe:

            async def answers() -> bool:
                nonlocal pid
                if self.child.proc.returncode is not None:
                    pytest.fail(f"the server exited: {self.child.describe()}")
                try:
                    response = await probe.get("/health")
                except httpx.TransportError:
                    return False
                if response.status_code != 200:
                    return False
                pid = int(response.json()["pid"])
                return True

            await _until(f"the server at {self.base_url} answers", answers)
        return pid

    async def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait (bounded) for the server to exit; its return code."""
        await self.client.aclose()
        os.kill(self.child.proc.pid, sig)
        return await self.child.exit_code()


@asynccontextmanager
async def _server(children: Children, module: str, *, env: dict[str, str]) -> AsyncIterator[Server]:
    """Serve the FastAPI app with ``uvicorn``, or the Flask app with ``gunicorn`` (one worker),
    on a free port. At the end, close the client; a gunicorn still running gets SIGTERM (a SIGKILL
    of its master would orphan the worker), and the caller's ``Children`` reaps what remains."""
    port = _free_port()
    if module == "uvicorn":
        argv = [FASTAPI_APP, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    else:
        argv = ["-w", "1", "-b", f"127.0.0.1:{port}", *_gunicorn_options(), FLASK_APP]
    server = Server(await children.spawn_module(module, *argv, env=env), port)
    try:
        yield server
    finally:
        await server.client.aclose()
        proc = server.child.proc
        if module == "gunicorn" and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                proc.terminate()
                await asyncio.wait_for(proc.wait(), WAIT_SECONDS)


def _gunicorn_options() -> list[str]:
    # Recent gunicorn opens a control socket at a fixed path under $HOME by default: not ours.
    settings = importlib.import_module("gunicorn.config").KNOWN_SETTINGS
    names = {setting.name for setting in settings}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


# FastAPI under uvicorn --------------------------------------------------------------------------


@pytest.fixture
async def side_tables(database_url: str) -> str:
    """The FastAPI app's side tables, empty: step executions, and the gates tests open."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            DROP TABLE IF EXISTS public.web_step_runs, public.web_gates;
            CREATE TABLE public.web_step_runs (
                seq bigserial PRIMARY KEY, workflow_id text, step text NOT NULL, pid int NOT NULL
            );
            CREATE TABLE public.web_gates (name text PRIMARY KEY);
            """
        )
    finally:
        await conn.close()
    return database_url


async def _step_runs(database_url: str, workflow_id: str) -> list[tuple[str, int]]:
    """(step, pid) of every recorded step execution of ``workflow_id``, in order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT step, pid FROM web_step_runs WHERE workflow_id = $1 ORDER BY seq", workflow_id
        )
    finally:
        await conn.close()
    return [(row["step"], row["pid"]) for row in rows]


async def _open_gate(database_url: str, name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO web_gates (name) VALUES ($1)", name)
    finally:
        await conn.close()


async def test_fastapi_retried_post_with_idempotency_key_runs_once(
    side_tables: str, tmp_path: Path
) -> None:
    """A POST retried with the same ``dbos-idempotency-key`` answers the same body, naming the
    key as the workflow ID, and its steps ran once; another key, or no key, runs anew."""
    database_url = side_tables
    key = f"order-{uuid.uuid4()}"
    async with (
        Children(tmp_path) as children,
        _server(children, "uvicorn", env=child_env(database_url)) as server,
    ):
        pid = await server.serving()
        headers = {"dbos-idempotency-key": key}
        first = await server.client.post("/orders/o-1", params={"amount": 42}, headers=headers)
        retry = await server.client.post("/orders/o-1", params={"amount": 42}, headers=headers)
        other = await server.client.post(
            "/orders/o-1", params={"amount": 42}, headers={"dbos-idempotency-key": key + "-b"}
        )
        unkeyed = await server.client.post("/orders/o-1", params={"amount": 42})

    expected = {"workflow_id": key, "seat": "seat-for-o-1", "receipt": "receipt-o-1-42"}
    assert (first.status_code, first.json()) == (200, expected), first.text
    assert (retry.status_code, retry.json()) == (200, expected), retry.text
    assert other.json() == {**expected, "workflow_id": key + "-b"}
    unkeyed_id = unkeyed.json()["workflow_id"]
    assert unkeyed_id not in (key, key + "-b")
    assert uuid.UUID(unkeyed_id)

    for workflow_id in (key, key + "-b", unkeyed_id):
        assert await _step_runs(database_url, workflow_id) == [("reserve", pid), ("charge", pid)]
        assert await recorded_steps(database_url, workflow_id) == [(1, "reserve"), (2, "charge")]
    rows = await workflow_rows(database_url, [key, key + "-b", unkeyed_id])
    assert {row["status"] for row in rows.values()} == {"SUCCESS"}


async def test_fastapi_request_id_and_request_context(database_url: str, tmp_path: Path) -> None:
    """``x-request-id`` is echoed (``dbos-request-id`` is accepted too), else one is generated
    and returned; ``DBOS.request`` describes the request in the handler, and a workflow the
    handler calls sees the same request."""
    async with (
        Children(tmp_path) as children,
        _server(children, "uvicorn", env=child_env(database_url)) as server,
    ):
        await server.serving()
        port = server.base_url.rsplit(":", 1)[1]
        echoed = await server.client.get(
            "/request/items/widget",
            params={"color": "red", "size": ""},
            headers={"x-request-id": "req-123", "x-custom": "yes", "cookie": "session=s-1"},
        )
        alternate = await server.client.get(
            "/request/items/gadget", headers={"dbos-request-id": "alt-456"}
        )
        generated = await server.client.get("/request/items/gizmo")

    assert echoed.status_code == 200, echoed.text
    assert echoed.headers["x-request-id"] == "req-123"
    body: dict[str, Any] = echoed.json()
    handler = body["handler"]
    assert handler["method"] == "GET"
    assert handler["url"] == f"http://127.0.0.1:{port}/request/items/widget?color=red&size="
    assert handler["base_url"] == f"http://127.0.0.1:{port}/"
    assert handler["path"] == "/request/items/widget"
    assert handler["query_params"] == {"color": "red", "size": ""}
    assert handler["path_params"] == {"item": "widget"}
    assert handler["cookies"] == {"session": "s-1"}
    assert handler["headers"]["x-custom"] == "yes"
    assert handler["headers"]["host"] == f"127.0.0.1:{port}"
    assert handler["client"][0] == "127.0.0.1"
    assert isinstance(handler["client"][1], int)
    assert handler["request_id"] == "req-123"
    assert body["workflow"] == {"request_id": "req-123", "path": "/request/items/widget"}

    assert alternate.headers["x-request-id"] == "alt-456"
    assert alternate.json()["workflow"] == {
        "request_id": "alt-456",
        "path": "/request/items/gadget",
    }

    request_id = generated.headers["x-request-id"]
    assert uuid.UUID(request_id)
    assert generated.json()["handler"]["request_id"] == request_id
    assert generated.json()["workflow"]["request_id"] == request_id


async def test_fastapi_required_roles(database_url: str, tmp_path: Path) -> None:
    """A workflow requiring ``admin`` or ``auditor`` answers 200 (with the user, roles and the
    assumed role) to an allowed user, and 403 with DBOS's JSON error body to a user lacking the
    roles or an unauthenticated call; a denied call records no workflow, even with an
    idempotency key."""
    denied_key = f"denied-{uuid.uuid4()}"
    async with (
        Children(tmp_path) as children,
        _server(children, "uvicorn", env=child_env(database_url)) as server,
    ):
        await server.serving()
        admin = await server.client.get(
            "/admin/report", headers={"x-user": "alice", "x-roles": "admin"}
        )
        auditor = await server.client.get(
            "/admin/report", headers={"x-user": "bob", "x-roles": "viewer,auditor"}
        )
        viewer = await server.client.get(
            "/admin/report",
            headers={"x-user": "carol", "x-roles": "viewer", "dbos-idempotency-key": denied_key},
        )
        anonymous = await server.client.get("/admin/report")

    assert (admin.status_code, admin.json()) == (
        200,
        {"user": "alice", "roles": ["admin"], "assumed_role": "admin"},
    )
    assert (auditor.status_code, auditor.json()) == (
        200,
        {"user": "bob", "roles": ["viewer", "auditor"], "assumed_role": "auditor"},
    )
    for response, detail in (
        (viewer, "user 'carol' has ['viewer']"),
        (anonymous, "called without authentication"),
    ):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/json"
        assert uuid.UUID(response.headers["x-request-id"])
        error = response.json()
        assert set(error) == {"message", "dbos_error_code", "dbos_error"}
        assert error["dbos_error"] == "DBOSNotAuthorizedError"
        assert error["dbos_error_code"] == "8"
        assert "admin_report requires one of the roles ['admin', 'auditor']" in error["message"]
        assert detail in error["message"]
    assert await workflow_rows(database_url, [denied_key]) == {}


async def test_fastapi_request_workflow_survives_sigkill_of_the_server(
    side_tables: str, tmp_path: Path
) -> None:
    """A POST's workflow is blocked after its first step (a gate the test holds closed) when the
    server is SIGKILLed; the client's request fails. A new server recovers the workflow at
    startup; the client's retry with the same idempotency key answers the workflow's result once
    the gate opens. The first step ran once in the first server, the rest once in the second."""
    database_url = side_tables
    key = f"crash-{uuid.uuid4()}"
    headers = {"dbos-idempotency-key": key}
    params: dict[str, str | int] = {"amount": 7, "gated": "true"}
    env = child_env(database_url)
    async with Children(tmp_path) as children:
        async with _server(children, "uvicorn", env=env) as first:
            first_pid = await first.serving()
            request = asyncio.ensure_future(
                first.client.post("/orders/o-crash", params=params, headers=headers)
            )

            async def first_step_checkpointed() -> bool:
                assert not request.done(), request
                return await recorded_steps(database_url, key) == [(1, "reserve")]

            await _until("the first step is checkpointed", first_step_checkpointed)
            await first.child.sigkill()
            with pytest.raises(httpx.TransportError):
                await request

        row = await workflow_row(database_url, key)
        assert (row["status"], row["recovery_attempts"]) == ("PENDING", 1)
        assert await _step_runs(database_url, key) == [("reserve", first_pid)]

        async with _server(children, "uvicorn", env=env) as second:
            second_pid = await second.serving()
            retry = asyncio.ensure_future(
                second.client.post("/orders/o-crash", params=params, headers=headers)
            )
            await _open_gate(database_url, "o-crash")
            response = await retry

    assert response.status_code == 200, response.text
    assert response.json() == {
        "workflow_id": key,
        "seat": "seat-for-o-crash",
        "receipt": "receipt-o-crash-7",
    }
    assert await _step_runs(database_url, key) == [
        ("reserve", first_pid),
        ("gate", second_pid),
        ("charge", second_pid),
    ]
    assert await recorded_steps(database_url, key) == [
        (1, "reserve"),
        (2, "wait_for_gate"),
        (3, "charge"),
    ]
    row = await workflow_row(database_url, key)
    assert (row["status"], row["recovery_attempts"]) == ("SUCCESS", 2)


@pytest.mark.parametrize(
    ("sig", "exit_code"),
    [
        (signal.SIGINT, 0),
        # uvicorn shuts down gracefully on SIGTERM too, then re-raises the signal it caught
        # (with the default handler restored), so the process ends "killed by SIGTERM".
        (signal.SIGTERM, -signal.SIGTERM),
    ],
    ids=["SIGINT", "SIGTERM"],
)
async def test_fastapi_shutdown_leaves_waiting_workflows_pending(
    side_tables: str, tmp_path: Path, sig: signal.Signals, exit_code: int
) -> None:
    """Workflows started by POSTs wait in ``recv``; the server, stopped by a signal, runs the
    app's lifespan shutdown and DBOS's, and exits; the workflows stay PENDING. A new server
    recovers them at startup, and messages sent through it complete them, each step once."""
    database_url = side_tables
    env = child_env(database_url)
    async with Children(tmp_path) as children:
        async with _server(children, "uvicorn", env=env) as first:
            first_pid = await first.serving()
            await first.child.read_until("STARTED")
            ids = []
            for _ in range(2):
                response = await first.client.post("/waiters")
                assert response.status_code == 200, response.text
                ids.append(response.json()["workflow_id"])

            async def waiting_in_recv() -> bool:
                # recv records its wake-up time before it waits, and its message after.
                steps = [await recorded_steps(database_url, wid) for wid in ids]
                return all(s == [(1, "before_recv"), (3, "DBOS.sleep")] for s in steps)

            await _until("both workflows wait in recv", waiting_in_recv)
            assert (await first.stop(sig)) == exit_code, first.child.describe()

        assert "STOPPED" in first.child.lines, first.child.describe()
        stderr = first.child.stderr
        assert "Application shutdown complete." in stderr, stderr
        assert "Traceback" not in stderr, stderr
        rows = await workflow_rows(database_url, ids)
        assert {wid: row["status"] for wid, row in rows.items()} == dict.fromkeys(ids, "PENDING")

        async with _server(children, "uvicorn", env=env) as second:
            second_pid = await second.serving()
            for wid in ids:
                status = await second.client.get(f"/workflows/{wid}")
                assert status.json() == {"status": "PENDING"}
                sent = await second.client.post(f"/messages/{wid}", json={"hello": wid})
                assert sent.status_code == 200, sent.text
            results = [(await second.client.get(f"/workflows/{wid}/result")) for wid in ids]
            statuses = [(await second.client.get(f"/workflows/{wid}")).json() for wid in ids]
            assert (await second.stop(signal.SIGINT)) == 0, second.child.describe()

    assert [r.json() for r in results] == [{"message": {"hello": wid}} for wid in ids]
    assert statuses == [{"status": "SUCCESS"}] * 2
    for wid in ids:
        assert await _step_runs(database_url, wid) == [
            ("before_recv", first_pid),
            ("after_recv", second_pid),
        ]
        assert await recorded_steps(database_url, wid) == [
            (1, "before_recv"),
            (2, "DBOS.recv"),
            (3, "DBOS.sleep"),
            (4, "after_recv"),
        ]


# Flask under gunicorn ---------------------------------------------------------------------------


def _side_effects(log: Path) -> list[tuple[str, str, int]]:
    """The Flask app's side-effect log as (workflow_id, step, pid), in the order written."""
    entries = []
    for line in (log.read_text() if log.exists() else "").splitlines():
        workflow_id, step, pid = line.split()
        entries.append((workflow_id, step, int(pid)))
    return entries


async def test_flask_under_gunicorn(database_url: str, tmp_path: Path) -> None:
    """Under gunicorn (one worker, DBOS launched in it at the first request): a route that
    starts a sync workflow returns its ID, and the workflow completes; a POST retried with the
    same idempotency key returns the same ID and runs once. A route that is itself a workflow
    answers its result, with the request's ID; retried with one key it runs once, without a key
    every POST runs. The server stops cleanly on SIGTERM."""
    log = tmp_path / "side_effects.log"
    env = child_env(database_url, APP_SIDE_EFFECT_LOG=str(log))
    order_key = f"order-{uuid.uuid4()}"
    greeting_key = f"greeting-{uuid.uuid4()}"
    async with (
        Children(tmp_path) as children,
        _server(children, "gunicorn", env=env) as server,
    ):
        worker_pid = await server.serving()
        assert worker_pid != server.child.proc.pid  # served by the forked worker

        started = await server.client.post("/orders/o-7/start")
        assert started.status_code == 200, started.text
        started_id = started.json()["workflow_id"]
        keyed = [
            await server.client.post(
                "/orders/o-8/start", headers={"dbos-idempotency-key": order_key}
            )
            for _ in range(2)
        ]
        results = [
            (await server.client.get(f"/workflows/{wid}/result")).json()
            for wid in (started_id, order_key)
        ]
        statuses = [
            (await server.client.get(f"/workflows/{wid}")).json() for wid in (started_id, order_key)
        ]

        greeted = [
            await server.client.post(
                "/greetings/ada",
                headers={"dbos-idempotency-key": greeting_key, "x-request-id": f"req-{i}"},
            )
            for i in range(2)
        ]
        unkeyed = [await server.client.post("/greetings/bob") for _ in range(2)]
        assert (await server.stop(signal.SIGTERM)) == 0, server.child.describe()

    assert uuid.UUID(started_id)
    assert [r.json() for r in keyed] == [{"workflow_id": order_key}] * 2
    assert results == [
        {"order": "o-7", "parcel": "parcel-o-7", "tracking": "tracking-parcel-o-7"},
        {"order": "o-8", "parcel": "parcel-o-8", "tracking": "tracking-parcel-o-8"},
    ]
    assert statuses == [{"status": "SUCCESS"}] * 2

    # The retried greeting answers the recorded result: the first request's ID, not its own.
    assert [r.status_code for r in greeted] == [200, 200]
    assert [r.headers["x-request-id"] for r in greeted] == ["req-0", "req-1"]
    expected = {"greeting": "Hello, ada!", "workflow_id": greeting_key, "request_id": "req-0"}
    assert [r.json() for r in greeted] == [expected] * 2
    unkeyed_ids = [r.json()["workflow_id"] for r in unkeyed]
    assert len(set(unkeyed_ids)) == 2
    for response in unkeyed:
        assert response.json()["request_id"] == response.headers["x-request-id"]

    effects = _side_effects(log)
    assert sorted(effects) == sorted(
        [
            (started_id, "pack", worker_pid),
            (started_id, "ship", worker_pid),
            (order_key, "pack", worker_pid),
            (order_key, "ship", worker_pid),
            (greeting_key, "greet", worker_pid),
            *((wid, "greet", worker_pid) for wid in unkeyed_ids),
        ]
    )
    for wid in (started_id, order_key):
        assert await recorded_steps(database_url, wid) == [(1, "pack"), (2, "ship")]
    assert await recorded_steps(database_url, greeting_key) == [(1, "compose_greeting")]
    rows = await workflow_rows(database_url, [started_id, order_key, greeting_key, *unkeyed_ids])
    assert len(rows) == 5
    assert {row["status"] for row in rows.values()} == {"SUCCESS"}
