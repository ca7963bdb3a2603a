"""Two processes, one system database: messages, events, cancellation and durable sleep across them.

Process B is a real app (``apps/cross_process_app.py``) in a subprocess; it prints ``READY``
once its workflows are blocked where the test wants them (registered with B's notify hub and
past their first database read), then what awaiting them gave. Process A is the test process
itself, with DBOS launched in-process under another executor ID. Both processes use the test's
system database, and every wait is bounded.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dbos_async import DBOS
from dbos_async._sysdb._urls import database_name

from ..conftest import make_config
from ._processes import Child, Children, child_env
from ._records import recorded_steps, workflow_row, workflow_rows

pytestmark = pytest.mark.acceptance

APP = "cross_process_app.py"
APP_VERSION = "cross-process-v1"
"""Set explicitly in every process, so that A, B and a restarted B agree on it."""
EXECUTOR_A = "process-a"
EXECUTOR_B = "process-b"
POOL_SIZE = 4
"""Process A's pool: small, as the test server's connections are shared (B's is 4 too)."""
WAKE_SECONDS = 10.0
"""How soon a cross-process wake-up must arrive: well under the hub's 30 s safety sweep, so a
pass cannot come from the sweep alone."""


@pytest.fixture
async def process_a(database_url: str) -> AsyncIterator[type[DBOS]]:
    """DBOS launched in the test process (process A), with its own executor ID."""
    DBOS(config=make_config(database_url, executor_id=EXECUTOR_A, application_version=APP_VERSION))
    await DBOS.launch_async()
    try:
        yield DBOS
    finally:
        await DBOS.destroy_async()


def _env(
    database_url: str, workflow_id: str, executor_id: str = EXECUTOR_B, **extra: str
) -> dict[str, str]:
    return child_env(
        database_url,
        APP_EXECUTOR_ID=executor_id,
        APP_VERSION=APP_VERSION,
        APP_WORKFLOW_ID=workflow_id,
        **extra,
    )


async def _until(what: str, condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll an in-process ``condition`` every 10 ms until it holds; fail after 10 s."""
    try:
        async with asyncio.timeout(10):
            while True:
                outcome = condition()
                if not isinstance(outcome, bool):
                    outcome = await outcome
                if outcome:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"not within 10s: {what}")


async def _result(child: Child, seconds: float = WAKE_SECONDS) -> Any:
    return ast.literal_eval(await child.read_until("RESULT ", seconds))


async def _b_finished(b: Child, database_url: str, workflow_id: str, status: str) -> None:
    """B exits with code 0, and the system database records ``status`` under B's executor."""
    assert (await b.exit_code()) == 0, b.describe()
    row = await workflow_row(database_url, workflow_id)
    assert (row["status"], row["executor_id"]) == (status, EXECUTOR_B)


async def test_send_wakes_recv_in_another_process(
    process_a: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """A message sent from process A wakes a workflow blocked in ``recv`` in process B, which
    returns it; the system database records SUCCESS under B's executor."""
    workflow_id = f"recv-{uuid.uuid4()}"
    async with Children(tmp_path) as children:
        b = await children.spawn(APP, "recv", env=_env(database_url, workflow_id))
        assert (await b.read_until("READY ")) == workflow_id

        await process_a.send_async(workflow_id, {"hello": "from A"}, topic="greeting")

        assert await _result(b) == {"hello": "from A"}
        await _b_finished(b, database_url, workflow_id, "SUCCESS")


async def test_get_event_waits_for_an_event_set_in_another_process(
    process_a: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """Process A starts waiting in ``get_event`` for a workflow in process B before the event
    exists; B's workflow sets it only after receiving A's message, and A's wait returns it."""
    workflow_id = f"event-{uuid.uuid4()}"
    async with Children(tmp_path) as children:
        b = await children.spawn(APP, "event", env=_env(database_url, workflow_id))
        assert (await b.read_until("READY ")) == workflow_id

        waiting = asyncio.ensure_future(
            process_a.get_event_async(workflow_id, "answer", timeout_seconds=30)
        )
        try:
            runtime = process_a._runtime
            assert runtime is not None
            # A's waiter is registered with A's hub (it then reads, finds nothing, and waits):
            # the event cannot exist yet, B sets it only after the message sent below.
            await _until("A waits for the event", lambda: runtime.notifier.waiter_count >= 1)
            assert not waiting.done()
            assert await process_a.get_all_events_async(workflow_id) == {}

            await process_a.send_async(workflow_id, "ping", topic="question")

            async with asyncio.timeout(WAKE_SECONDS):
                value = await waiting
        finally:
            waiting.cancel()
        assert value == {"reply_to": "ping"}
        assert await _result(b) == "ping"
        await _b_finished(b, database_url, workflow_id, "SUCCESS")


async def test_cancel_stops_a_sleeping_workflow_in_another_process(
    process_a: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """Cancelling from process A a workflow in a 60 s durable sleep in process B stops it at
    once: B's await of its result raises ``DBOSAwaitedWorkflowCancelledError`` within seconds,
    and the system database records CANCELLED."""
    workflow_id = f"cancel-{uuid.uuid4()}"
    async with Children(tmp_path) as children:
        b = await children.spawn(APP, "sleep", env=_env(database_url, workflow_id))
        assert (await b.read_until("READY ")) == workflow_id

        started = time.monotonic()
        await process_a.cancel_workflow_async(workflow_id)
        error = await b.read_until("CANCELLED ", WAKE_SECONDS)
        elapsed = time.monotonic() - started

        assert error == "DBOSAwaitedWorkflowCancelledError"
        assert elapsed < 5.0, f"B noticed the cancellation only after {elapsed:.1f}s"
        await _b_finished(b, database_url, workflow_id, "CANCELLED")


async def test_durable_sleep_survives_sigkill_and_sleeps_only_the_remainder(
    database_url: str, tmp_path: Path
) -> None:
    """A workflow records its start time, sleeps 6 s durably, and is SIGKILLed ~2 s into the
    sleep; the restarted process (same executor and version) recovers it, and it wakes ~6 s
    after the recorded start: not 6 s after the recovery (which would be 8 s or more)."""
    workflow_id = f"sleep-{uuid.uuid4()}"
    executor_id = "process-b-durable"
    env = _env(database_url, workflow_id, executor_id, APP_SLEEP_SECONDS="6")
    async with Children(tmp_path) as children:
        first = await children.spawn(APP, "durable-start", env=env)
        assert (await first.read_until("READY ")) == workflow_id
        await asyncio.sleep(2)  # a deliberate delay into the sleep, not synchronisation
        await first.sigkill()

        row = await workflow_row(database_url, workflow_id)
        assert (row["status"], row["executor_id"], row["application_version"]) == (
            "PENDING",
            executor_id,
            APP_VERSION,
        )
        # The start time and the wake-up time are both recorded before the kill.
        assert await recorded_steps(database_url, workflow_id) == [(1, "now"), (2, "DBOS.sleep")]

        second = await children.spawn(APP, "durable-recover", env=env)
        result = await _result(second, seconds=15)
        assert (await second.exit_code()) == 0, second.describe()

    elapsed = result["woke"] - result["started"]
    assert 5.5 <= elapsed < 8.0, f"woke {elapsed:.2f}s after the recorded start, expected ~6s"
    row = await workflow_row(database_url, workflow_id)
    assert (row["status"], row["recovery_attempts"]) == ("SUCCESS", 2)
    assert await recorded_steps(database_url, workflow_id) == [
        (1, "now"),
        (2, "DBOS.sleep"),
        (3, "now"),
    ]


async def _listen_backends(admin: asyncpg.Connection, database: str) -> dict[int, str]:
    """pid -> query of the backends of ``database`` whose last query was a LISTEN."""
    rows = await admin.fetch(
        "SELECT pid, query FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
        database,
    )
    return {row["pid"]: row["query"] for row in rows}


@contextlib.asynccontextmanager
async def _new_connections_refused(admin: asyncpg.Connection, database: str) -> AsyncIterator[None]:
    """While inside, ``database`` accepts no new connection (open ones keep working)."""
    await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


async def test_recv_waiters_survive_losing_the_listen_connection(
    process_a: type[DBOS], admin_url: str, database_url: str, tmp_path: Path
) -> None:
    """With 100 workflows of process B waiting in ``recv``, B's LISTEN backend is terminated and
    process A sends each its message before B can listen again, so every notification is lost:
    B's hub reconnects, re-checks the database, and all 100 return their message within
    seconds (not at the next 30 s safety sweep)."""
    count = 100
    prefix = f"many-{uuid.uuid4()}"
    ids = [f"{prefix}-{i}" for i in range(count)]
    database = database_name(database_url)
    runtime_a = process_a._runtime
    assert runtime_a is not None
    # A sends below while its database refuses new connections: open all of A's pool first.
    pool = runtime_a.db.pool
    await asyncio.gather(
        *(pool.execute("SELECT pg_sleep(0.05)") for _ in range(pool.get_max_size()))
    )
    admin = await asyncpg.connect(admin_url)
    try:
        async with Children(tmp_path) as children:
            b = await children.spawn(
                APP, "many", env=_env(database_url, prefix, APP_COUNT=str(count))
            )
            b_listener = int(await b.read_until("READY "))

            # B's hub connection is an idle backend whose last query was a LISTEN.
            backends = await _listen_backends(admin, database)
            assert backends.get(b_listener, "").startswith('LISTEN "dbos_async_'), backends

            async with _new_connections_refused(admin, database):
                killed = await admin.fetch(
                    "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity "
                    "WHERE datname = $1 AND query ILIKE 'LISTEN%' AND pid = $2",
                    database,
                    b_listener,
                )
                assert [row["killed"] for row in killed] == [True]

                started = time.monotonic()
                await asyncio.gather(
                    *(process_a.send_async(ids[i], f"message {i}") for i in range(count))
                )
                await runtime_a.notifier.flush()  # the NOTIFYs are out while B cannot listen
                consumed = await runtime_a.db.fetchval(
                    "SELECT count(*) FROM notifications "
                    "WHERE destination_uuid = ANY($1::text[]) AND consumed",
                    ids,
                )
                assert consumed == 0, "a message was received while B had no LISTEN connection"

            results = await _result(b)
            elapsed = time.monotonic() - started
            new_listener, connections = map(int, (await b.read_until("LISTENER ")).split())
            assert (await b.exit_code()) == 0, b.describe()
    finally:
        await admin.close()

    assert results == {ids[i]: f"message {i}" for i in range(count)}
    assert elapsed < WAKE_SECONDS
    assert (new_listener != b_listener, connections) == (True, 2), b.describe()
    assert "The LISTEN connection was lost" in b.stderr
    assert "LISTEN reconnection failed" in b.stderr  # B tried while connections were refused
    rows = await workflow_rows(database_url, ids)
    assert sorted(rows) == sorted(ids)
    assert {(row["status"], row["executor_id"]) for row in rows.values()} == {
        ("SUCCESS", EXECUTOR_B)
    }
