"""Transactions on an application database: ``@DBOS.transaction`` (sync and async), the DBOS
3.x datasources, and the exactly-once promise (the output row commits with the user's writes).

Every test runs on a real application database of its module, beside the module's system
database; ``widgets`` is the application's table.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from dbos_async import (
    DBOS,
    AsyncSQLAlchemyDatasource,
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSInvalidArgumentError,
    SetWorkflowID,
    SQLAlchemyDatasource,
)
from tests.conftest import _drop, _recreate, _session_token, make_config, with_database
from tests.integration._locks import until_a_statement_waits_for_a_lock
from tests.waypoints import Waypoints

calls: list[str] = []
points = Waypoints()


@pytest.fixture(scope="module")
def app_database_url(request: pytest.FixtureRequest, admin_url: str) -> Iterator[str]:
    """An application database for this module, with the ``widgets`` table."""
    digest = hashlib.sha1(request.module.__name__.encode()).hexdigest()[:10]
    name = f"dbos_async_app_{_session_token()}_{digest}"
    url = with_database(admin_url, name)

    async def create() -> None:
        await _recreate(admin_url, name)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE widgets (id serial PRIMARY KEY, name text UNIQUE NOT NULL, "
                "count integer NOT NULL DEFAULT 0)"
            )
        finally:
            await conn.close()

    asyncio.run(create())
    yield url
    asyncio.run(_drop(admin_url, name))


@pytest.fixture
async def app_db(app_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the application database, its tables emptied for this test."""
    calls.clear()
    points.clear()
    conn = await asyncpg.connect(app_database_url)
    await conn.execute("TRUNCATE widgets RESTART IDENTITY")
    if await conn.fetchval("SELECT to_regclass('dbos.transaction_outputs')") is not None:
        await conn.execute("TRUNCATE dbos.transaction_outputs")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def dbos_app(
    database_url: str, app_database_url: str, app_db: asyncpg.Connection
) -> AsyncIterator[type[DBOS]]:
    """DBOS launched with ``application_database_url``."""
    DBOS(config=make_config(database_url, application_database_url=app_database_url))
    await DBOS.launch_async()
    try:
        yield DBOS
    finally:
        await DBOS.destroy_async()


async def widget_names(conn: asyncpg.Connection) -> list[str]:
    return [row["name"] for row in await conn.fetch("SELECT name FROM widgets ORDER BY id")]


async def recorded_outputs(conn: asyncpg.Connection, workflow_id: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT function_id FROM dbos.transaction_outputs WHERE workflow_id = $1 "
        "ORDER BY function_id",
        workflow_id,
    )
    return [row["function_id"] for row in rows]


# The seed's API: @DBOS.transaction and DBOS.sql_session -------------------------------------


@DBOS.transaction()
async def add_widget(name: str) -> int:
    calls.append(name)
    result = await DBOS.sql_session.execute(
        text("INSERT INTO widgets (name) VALUES (:name) RETURNING id"), {"name": name}
    )
    return int(result.scalar_one())


@DBOS.transaction(isolation_level="READ COMMITTED")
async def add_widget_raw(name: str) -> int:
    calls.append(name)
    return int(
        await DBOS.sql_connection.fetchval(
            "INSERT INTO widgets (name) VALUES ($1) RETURNING id", name
        )
    )


@DBOS.transaction()
def add_widget_sync(name: str) -> int:
    calls.append(name)
    result = DBOS.sql_session.execute(
        text("INSERT INTO widgets (name) VALUES (:name) RETURNING id"), {"name": name}
    )
    return int(result.scalar_one())


@DBOS.transaction()
async def add_then_fail(name: str) -> None:
    calls.append(name)
    await DBOS.sql_connection.execute("INSERT INTO widgets (name) VALUES ($1)", name)
    raise ValueError(f"no {name}")


@DBOS.transaction()
def add_then_fail_sync(name: str) -> None:
    calls.append(name)
    DBOS.sql_session.execute(text("INSERT INTO widgets (name) VALUES (:name)"), {"name": name})
    raise ValueError(f"no {name}")


@DBOS.workflow()
async def three_widgets(prefix: str) -> list[int]:
    first, second = await asyncio.gather(add_widget(f"{prefix}-a"), add_widget_raw(f"{prefix}-b"))
    third = await asyncio.to_thread(add_widget_sync, f"{prefix}-c")
    return [first, second, third]


@DBOS.workflow()
def sync_widgets(prefix: str) -> list[int]:
    return [add_widget_sync(f"{prefix}-1"), add_widget_sync(f"{prefix}-2")]


@DBOS.workflow()
async def failing_transaction(name: str) -> str:
    try:
        await add_then_fail(name)
    except ValueError as error:
        return f"caught {error}"
    return "not raised"


async def test_transactions_in_a_workflow_commit_once_and_replay(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """Async (AsyncSession and asyncpg) and sync (Session) transactions of a workflow commit
    their writes with their output rows; running the workflow again under its ID replays
    every transaction's output without running it, and each has its own step in order."""
    workflow_id = str(uuid.uuid4())
    with SetWorkflowID(workflow_id):
        first = await three_widgets("w")
    with SetWorkflowID(workflow_id):
        assert await three_widgets("w") == first
    assert sorted(first) == [1, 2, 3]  # the gathered two commit in either order
    assert sorted(calls) == ["w-a", "w-b", "w-c"]
    assert sorted(await widget_names(app_db)) == ["w-a", "w-b", "w-c"]
    assert await recorded_outputs(app_db, workflow_id) == [1, 2, 3]
    steps = await DBOS.list_workflow_steps_async(workflow_id)
    assert [(s["function_id"], s["function_name"], s["output"]) for s in steps] == [
        (1, "add_widget", first[0]),
        (2, "add_widget_raw", first[1]),
        (3, "add_widget_sync", first[2]),
    ]


async def test_a_sync_workflow_runs_sync_transactions(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """A sync workflow's sync transactions commit in order and are checkpointed."""
    handle = await DBOS.start_workflow_async(sync_widgets, "s")
    assert await handle.get_result() == [1, 2]
    assert await widget_names(app_db) == ["s-1", "s-2"]
    assert await recorded_outputs(app_db, handle.workflow_id) == [1, 2]


async def test_a_failing_transaction_rolls_back_and_its_error_replays(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """A transaction that raises leaves no write and no output row behind; its error is the
    step's recorded outcome, replayed (not re-run) when the workflow runs again."""
    workflow_id = str(uuid.uuid4())
    for _ in range(2):
        with SetWorkflowID(workflow_id):
            assert await failing_transaction("bad") == "caught no bad"
    assert calls == ["bad"]
    assert await widget_names(app_db) == []
    assert await recorded_outputs(app_db, workflow_id) == []
    with pytest.raises(ValueError, match="no bad-sync"):
        await asyncio.to_thread(add_then_fail_sync, "bad-sync")
    assert await widget_names(app_db) == []


async def test_transactions_outside_a_workflow_are_plain_transactions(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """Called outside a workflow, a transaction just commits (no step, no output row), every
    time it is called."""
    assert await add_widget("plain") == 1
    assert await asyncio.to_thread(add_widget_sync, "plain-sync") == 2
    assert await widget_names(app_db) == ["plain", "plain-sync"]
    assert await app_db.fetchval("SELECT count(*) FROM dbos.transaction_outputs") == 0


async def test_a_commit_whose_checkpoint_was_lost_is_not_run_again(
    dbos_app: type[DBOS], app_db: asyncpg.Connection, database_url: str
) -> None:
    """When a transaction committed but its system checkpoint was not written (the process
    died in between), the next execution returns the recorded output without running it."""
    workflow_id = str(uuid.uuid4())
    with SetWorkflowID(workflow_id):
        first = await three_widgets("lost")
    # As if the process had died after the application commits, before the checkpoints.
    sys_db = await asyncpg.connect(database_url)
    try:
        await sys_db.execute(
            "DELETE FROM dbos.operation_outputs WHERE workflow_uuid = $1", workflow_id
        )
        await sys_db.execute(
            "UPDATE dbos.workflow_status SET status = 'CANCELLED' WHERE workflow_uuid = $1",
            workflow_id,
        )
    finally:
        await sys_db.close()
    calls.clear()
    handle = await DBOS.resume_workflow_async(workflow_id)
    assert await handle.get_result() == first
    assert calls == []
    assert sorted(await widget_names(app_db)) == ["lost-a", "lost-b", "lost-c"]


async def test_a_duplicate_execution_never_commits_twice(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """When another execution recorded the transaction's output first, this one does not run
    the function: it returns the recorded output."""
    workflow_id = str(uuid.uuid4())
    async with dbos_app_codec_row(app_db, workflow_id, 1, 42):
        with SetWorkflowID(workflow_id):
            assert (await three_widgets("dup"))[0] == 42
    assert "dup-a" not in calls
    assert "dup-a" not in await widget_names(app_db)


class dbos_app_codec_row:
    """Record an output for ``(workflow_id, function_id)`` as another execution would have."""

    def __init__(self, conn: asyncpg.Connection, workflow_id: str, function_id: int, value: Any):
        self.conn, self.key, self.value = conn, (workflow_id, function_id), value

    async def __aenter__(self) -> None:
        from dbos_async._core._runtime import current_runtime

        codec = current_runtime().codec
        await self.conn.execute(
            "INSERT INTO dbos.transaction_outputs (workflow_id, function_id, output, "
            "serialization) VALUES ($1, $2, $3, $4)",
            *self.key,
            codec.dumps(self.value),
            codec.name,
        )

    async def __aexit__(self, *exc: object) -> None:
        return None


@DBOS.transaction()
async def increment(name: str) -> int:
    """Read, wait for the other writer to read too (first attempt only), then write."""
    calls.append(name)
    session = DBOS.sql_session
    count = (
        await session.execute(text("SELECT count FROM widgets WHERE name = 'shared'"))
    ).scalar_one()
    if calls.count(name) == 1:
        points.passed("read")
        await points.gate("both-read").wait()
    await session.execute(
        text("UPDATE widgets SET count = :count WHERE name = 'shared'"), {"count": count + 1}
    )
    return int(count + 1)


@DBOS.workflow()
async def increment_workflow(name: str) -> int:
    return await increment(name)


async def test_serialization_failures_are_retried(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """Two serializable read-modify-write transactions that overlap: one fails to serialize,
    runs again, and both increments land."""
    await app_db.execute("INSERT INTO widgets (name) VALUES ('shared')")
    first = await DBOS.start_workflow_async(increment_workflow, "one")
    second = await DBOS.start_workflow_async(increment_workflow, "two")
    await points.reached("read", 2)
    points.gate("both-read").set()
    results = sorted([await first.get_result(), await second.get_result()])
    assert results == [1, 2]
    assert await app_db.fetchval("SELECT count FROM widgets WHERE name = 'shared'") == 2
    assert len(calls) == 3  # one of them ran twice


async def test_deleting_a_workflow_deletes_its_transaction_outputs(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """``delete_workflow`` also forgets the workflow's outputs in the application database;
    a rewind forgets those from its step on, and runs those transactions again."""
    kept, deleted = str(uuid.uuid4()), str(uuid.uuid4())
    for workflow_id in (kept, deleted):
        with SetWorkflowID(workflow_id):
            await three_widgets(workflow_id[:8])
    await DBOS.delete_workflow_async(deleted)
    assert await recorded_outputs(app_db, deleted) == []
    assert await recorded_outputs(app_db, kept) == [1, 2, 3]
    await app_db.execute("DELETE FROM widgets WHERE name = $1", f"{kept[:8]}-c")
    calls.clear()
    handle = await DBOS.rewind_workflow_async(kept, start_step=3)
    assert sorted((await handle.get_result())[:2]) == [1, 2]
    assert calls == [f"{kept[:8]}-c"]


async def test_transaction_misuse_is_refused(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """Bad isolation levels, session access outside a transaction, and a transaction inside
    another are refused with named errors, and nothing is written."""
    with pytest.raises(DBOSInvalidArgumentError, match="isolation_level"):
        DBOS.transaction(isolation_level="CHAOS")  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="only available inside a transaction"):
        DBOS.sql_session  # noqa: B018
    with pytest.raises(DBOSException, match="only available inside a transaction"):
        DBOS.sql_connection  # noqa: B018

    @DBOS.transaction()
    async def nested() -> None:
        await add_widget("inner")

    with pytest.raises(DBOSException, match="inside another transaction"):
        await nested()
    assert await widget_names(app_db) == []


async def test_a_transaction_without_an_application_database_says_so(
    dbos: type[DBOS],
) -> None:
    """Without ``application_database_url``, a transaction names the missing setting."""
    with pytest.raises(DBOSException, match="application_database_url"):
        await add_widget("nowhere")


# DBOS 3.x datasources ----------------------------------------------------------------------


async def test_async_datasource_transactions_and_run_tx_step(
    dbos: type[DBOS], app_database_url: str, app_db: asyncpg.Connection
) -> None:
    """``await AsyncSQLAlchemyDatasource.create(url)`` with the URL forms SQLAlchemy users
    write; ``@ds.transaction()``, ``ds.run_tx_step_async`` and ``ds.sql_session()`` in a
    workflow, replayed once recorded."""
    url = app_database_url.replace("postgresql://", "postgresql+psycopg://")
    ds = await AsyncSQLAlchemyDatasource.create(url)
    try:

        @ds.transaction(isolation_level="REPEATABLE READ")
        async def insert(name: str) -> str:
            calls.append(name)
            await ds.sql_session().execute(
                text("INSERT INTO widgets (name) VALUES (:name)"), {"name": name}
            )
            return name.upper()

        async def count() -> int:
            result = await ds.sql_session().execute(text("SELECT count(*) FROM widgets"))
            return int(result.scalar_one())

        @DBOS.workflow()
        async def datasource_workflow() -> tuple[str, int]:
            inserted = await insert("ds")
            return inserted, await ds.run_tx_step_async({"name": "count"}, count)

        workflow_id = str(uuid.uuid4())
        for _ in range(2):
            with SetWorkflowID(workflow_id):
                assert await datasource_workflow() == ("DS", 1)
        assert calls == ["ds"]
        assert await recorded_outputs(app_db, workflow_id) == [1, 2]
        steps = await DBOS.list_workflow_steps_async(workflow_id)
        assert [s["function_name"].rsplit(".", 1)[-1] for s in steps] == ["insert", "count"]
    finally:
        await ds.dispose()


async def test_sync_datasource_and_two_datasources_in_one_app(
    dbos: type[DBOS],
    app_database_url: str,
    admin_url: str,
    app_db: asyncpg.Connection,
) -> None:
    """A sync ``SQLAlchemyDatasource`` and a second database's async datasource in one
    workflow: each records its own outputs in its own database."""
    other_name = f"dbos_async_app2_{_session_token()}"
    other_url = with_database(admin_url, other_name)
    await _recreate(admin_url, other_name)
    sync_ds = await asyncio.to_thread(
        SQLAlchemyDatasource.create, app_database_url.replace("postgresql", "postgresql+asyncpg")
    )
    other_ds = await AsyncSQLAlchemyDatasource.create(
        other_url.replace("postgresql", "postgresql+asyncpg")
    )
    try:
        await other_ds.run_migrations()  # twice is harmless

        @sync_ds.transaction()
        def sync_insert(name: str) -> int:
            sync_ds.sql_session().execute(
                text("INSERT INTO widgets (name) VALUES (:name)"), {"name": name}
            )
            return 1

        def sync_count() -> int:
            return int(
                sync_ds.sql_session().execute(text("SELECT count(*) FROM widgets")).scalar_one()
            )

        @other_ds.transaction()
        async def other_now() -> bool:
            return bool(await DBOS.sql_connection.fetchval("SELECT now() IS NOT NULL"))

        @DBOS.workflow()
        async def two_databases() -> tuple[int, int, bool]:
            inserted = await asyncio.to_thread(sync_insert, "sync-ds")
            counted = await asyncio.to_thread(sync_ds.run_tx_step, None, sync_count)
            return inserted, counted, await other_now()

        handle = await DBOS.start_workflow_async(two_databases)
        assert await handle.get_result() == (1, 1, True)
        assert await recorded_outputs(app_db, handle.workflow_id) == [1, 2]
        other = await asyncpg.connect(other_url)
        try:
            assert [
                r["function_id"]
                for r in await other.fetch("SELECT function_id FROM dbos.transaction_outputs")
            ] == [3]
        finally:
            await other.close()
    finally:
        await asyncio.to_thread(sync_ds.dispose)
        await other_ds.dispose()
        await _drop(admin_url, other_name)


async def test_datasources_refuse_bad_input(app_database_url: str) -> None:
    """Wrong URLs, function kinds and options fail with named errors."""
    with pytest.raises(DBOSInvalidArgumentError, match="postgresql"):
        await AsyncSQLAlchemyDatasource.create("mysql://localhost/x")
    ds = await AsyncSQLAlchemyDatasource.create(app_database_url)
    try:
        with pytest.raises(DBOSInvalidArgumentError, match="needs an async def"):

            @ds.transaction()
            def not_async() -> None: ...

        with pytest.raises(DBOSInvalidArgumentError, match="isolation_level"):
            ds.transaction(isolation_level="NONE")  # type: ignore[call-overload]
        with pytest.raises(DBOSInvalidArgumentError, match="Unknown transaction option"):
            ds.run_tx_step_async({"retries": 3}, asyncio.sleep, 0).close()
        with pytest.raises(DBOSException, match="only available inside a transaction"):
            ds.sql_session()
    finally:
        await ds.dispose()
    sync_ds = await asyncio.to_thread(SQLAlchemyDatasource.create, app_database_url)
    try:
        with pytest.raises(DBOSInvalidArgumentError, match="needs a plain function"):

            @sync_ds.transaction()
            async def not_sync() -> None: ...

    finally:
        await asyncio.to_thread(sync_ds.dispose)


async def test_a_datasource_outside_dbos_is_just_a_transaction(
    app_database_url: str, app_db: asyncpg.Connection
) -> None:
    """Without DBOS launched, a datasource's transaction commits or rolls back."""
    ds = await AsyncSQLAlchemyDatasource.create(app_database_url)
    try:

        @ds.transaction()
        async def insert(name: str) -> None:
            await DBOS.sql_connection.execute("INSERT INTO widgets (name) VALUES ($1)", name)
            if name == "bad":
                raise RuntimeError("rolled back")

        await insert("good")
        with pytest.raises(RuntimeError):
            await insert("bad")
        assert await widget_names(app_db) == ["good"]
    finally:
        await ds.dispose()


async def test_concurrent_executions_of_one_transaction_commit_once(
    app_database_url: str, app_db: asyncpg.Connection
) -> None:
    """Two executions of the same workflow's transaction at once: the second waits on the
    first's reserved output row and returns the first's output without running the function."""
    from dbos_async._core._serialization import Codec
    from dbos_async._features._transactions import OutputKey, Ran, TransactionSettings

    ds = await AsyncSQLAlchemyDatasource.create(app_database_url)
    try:

        async def insert(name: str) -> str:
            calls.append(name)
            await DBOS.sql_connection.execute("INSERT INTO widgets (name) VALUES ($1)", name)
            points.passed("inserted")
            await points.gate("commit").wait()
            return f"{name} committed"

        key = OutputKey(f"dup-{uuid.uuid4()}", 1, Codec(None))
        settings = TransactionSettings("insert", "READ COMMITTED")
        first = asyncio.create_task(ds.attempt(settings, insert, ("first",), {}, key))
        await points.reached("inserted")
        second = asyncio.create_task(ds.attempt(settings, insert, ("second",), {}, key))
        await until_a_statement_waits_for_a_lock(app_db, unless_done=second)
        points.gate("commit").set()
        assert await first == Ran("first committed")
        stored = await second
        assert key.codec.loads(stored.output, stored.serialization) == "first committed"  # type: ignore[union-attr]
        assert calls == ["first"]
        assert await widget_names(app_db) == ["first"]
    finally:
        await ds.dispose()


async def test_workflow_ids_with_quotes_and_backslashes(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """A workflow ID that SQL would misread unescaped records and replays its transactions."""
    workflow_id = "o'brien\\x00'); DROP TABLE widgets; --"
    for _ in range(2):
        with SetWorkflowID(workflow_id):
            assert sorted(await three_widgets("q")) == [1, 2, 3]
    assert sorted(calls) == ["q-a", "q-b", "q-c"]
    assert await recorded_outputs(app_db, workflow_id) == [1, 2, 3]


server_pids: list[int] = []


@DBOS.transaction()
async def insert_after_gate(name: str) -> str:
    calls.append(name)
    if calls.count(name) == 1:
        server_pids.append(DBOS.sql_connection.get_server_pid())
        points.passed("in-transaction")
        await points.gate("go").wait()
    await DBOS.sql_connection.execute("INSERT INTO widgets (name) VALUES ($1)", name)
    return name


@DBOS.workflow()
async def gated_workflow(name: str) -> str:
    return await insert_after_gate(name)


async def test_a_transaction_whose_connection_dies_runs_again(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """The server ends the transaction's connection mid-way: the transaction did not commit,
    so it runs again on a fresh connection, and commits once."""
    handle = await DBOS.start_workflow_async(gated_workflow, "reborn")
    await points.reached("in-transaction")
    assert await app_db.fetchval("SELECT pg_terminate_backend($1)", server_pids[-1])
    points.gate("go").set()
    assert await handle.get_result() == "reborn"
    assert calls == ["reborn", "reborn"]
    assert await widget_names(app_db) == ["reborn"]


async def test_application_tables_in_the_system_database(
    database_url: str, app_db: asyncpg.Connection
) -> None:
    """The application database may be the system database itself: the outputs table sits
    beside the system tables, and transactions commit exactly once there too."""
    system_db = await asyncpg.connect(database_url)
    try:
        await system_db.execute(
            "CREATE TABLE IF NOT EXISTS widgets (id serial PRIMARY KEY, name text UNIQUE NOT "
            "NULL, count integer NOT NULL DEFAULT 0)"
        )
        await system_db.execute("TRUNCATE widgets RESTART IDENTITY")
        DBOS(config=make_config(database_url, application_database_url=database_url))
        await DBOS.launch_async()
        try:
            workflow_id = str(uuid.uuid4())
            for _ in range(2):
                with SetWorkflowID(workflow_id):
                    assert sorted(await three_widgets("one-db")) == [1, 2, 3]
        finally:
            await DBOS.destroy_async()
        assert sorted(calls) == ["one-db-a", "one-db-b", "one-db-c"]
        assert await recorded_outputs(system_db, workflow_id) == [1, 2, 3]
    finally:
        await system_db.execute("DROP TABLE widgets")
        await system_db.close()


async def test_the_system_database_defaults_to_one_beside_the_application_database(
    admin_url: str,
) -> None:
    """With only ``application_database_url`` configured, the system database is
    ``<its name>_dbos_sys`` on the same server, as in DBOS."""
    from dbos_async._core._config import resolve_config
    from dbos_async._setup import system_database_url

    app_url = with_database(admin_url, "shop")
    config = resolve_config({"name": "shop", "application_database_url": app_url})
    assert await system_database_url(config) == with_database(admin_url, "shop_dbos_sys")


sync_gate = threading.Event()


@DBOS.transaction()
def insert_after_gate_sync(name: str) -> str:
    calls.append(name)
    if calls.count(name) == 1:
        server_pids.append(DBOS.sql_connection.info.backend_pid)
        points_from_thread.put_nowait("in-transaction")
        assert sync_gate.wait(20)
    DBOS.sql_session.execute(text("INSERT INTO widgets (name) VALUES (:name)"), {"name": name})
    return name


points_from_thread: queue.SimpleQueue[str] = queue.SimpleQueue()


async def test_a_sync_transaction_whose_connection_dies_runs_again(
    dbos_app: type[DBOS], app_db: asyncpg.Connection
) -> None:
    """As above, for a sync transaction over psycopg."""
    sync_gate.clear()
    task = asyncio.create_task(asyncio.to_thread(insert_after_gate_sync, "reborn-sync"))
    assert await asyncio.to_thread(points_from_thread.get, timeout=20) == "in-transaction"
    assert await app_db.fetchval("SELECT pg_terminate_backend($1)", server_pids[-1])
    sync_gate.set()
    assert await task == "reborn-sync"
    assert calls == ["reborn-sync", "reborn-sync"]
    assert await widget_names(app_db) == ["reborn-sync"]


@DBOS.workflow()
async def widget_then_mark(name: str) -> int:
    widget_id = await add_widget(name)
    points.passed("after-transaction")
    return widget_id


async def test_the_outcome_waits_for_a_transactions_checkpoint(
    dbos_app: type[DBOS], app_db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction's output is durable once it commits, so the workflow goes on while its
    checkpoint is written; the workflow's own outcome waits for that checkpoint, and a
    checkpoint refused meanwhile (the workflow was cancelled) keeps it from recording SUCCESS."""
    import dbos_async._features._step as step_module

    held, release = asyncio.Event(), asyncio.Event()
    insert_step_output = vars(step_module)["insert_step_output"]

    async def holding(db: Any, workflow_id: str, function_id: int, name: str, **kw: Any) -> bool:
        if name == "add_widget":
            held.set()
            await release.wait()
        return bool(await insert_step_output(db, workflow_id, function_id, name, **kw))

    monkeypatch.setattr(step_module, "insert_step_output", holding)
    handle = await DBOS.start_workflow_async(widget_then_mark, "held")
    await asyncio.wait_for(held.wait(), 20)
    await points.reached("after-transaction")
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    assert status is not None and status.status == "PENDING"
    await DBOS.cancel_workflow_async(handle.workflow_id)
    release.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await handle.get_result()
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    assert status is not None and status.status == "CANCELLED"
    assert await widget_names(app_db) == ["held"]


@DBOS.step()
async def after_the_widget(widget_id: int) -> int:
    return widget_id * 10


@DBOS.workflow()
async def widget_then_step(name: str) -> int:
    return await after_the_widget(await add_widget(name))


async def test_a_run_again_after_a_fault_waits_for_the_last_runs_checkpoints(
    dbos_app: type[DBOS], app_db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an error of the system database, a workflow runs again from its recorded steps;
    it first waits for the checkpoints its last run was still writing in the background (a
    transaction's), so the transaction replays its recorded output instead of running again
    and finding its checkpoint taken."""
    import dbos_async._features._step as step_module
    import dbos_async._features._workflow as workflow_module
    from dbos_async._sysdb._retry import mark_from_system_database

    held, release, restarting = asyncio.Event(), asyncio.Event(), asyncio.Event()
    written = asyncio.Event()  # the transaction's checkpoint committed
    written_at_reload: list[bool] = []
    faults: list[str] = []
    insert_step_output = vars(step_module)["insert_step_output"]
    restarted = vars(workflow_module)["_restarted"]
    load_step_outputs = vars(workflow_module)["load_step_outputs"]

    async def holding(db: Any, workflow_id: str, function_id: int, name: str, **kw: Any) -> bool:
        if name == "add_widget" and not held.is_set():
            held.set()
            await release.wait()
            recorded = bool(await insert_step_output(db, workflow_id, function_id, name, **kw))
            written.set()
            return recorded
        if name == "after_the_widget" and not faults:
            faults.append(name)
            error = asyncpg.PostgresSyntaxError("an engine bug")
            mark_from_system_database(error)
            raise error
        return bool(await insert_step_output(db, workflow_id, function_id, name, **kw))

    async def noting_restart(runtime: Any, ctx: Any) -> Any:
        restarting.set()
        return await restarted(runtime, ctx)

    async def noting_reload(db: Any, workflow_id: str) -> Any:
        written_at_reload.append(written.is_set())  # read at the call, before any await
        return await load_step_outputs(db, workflow_id)

    monkeypatch.setattr(step_module, "insert_step_output", holding)
    monkeypatch.setattr(workflow_module, "_restarted", noting_restart)
    monkeypatch.setattr(workflow_module, "load_step_outputs", noting_reload)
    handle = await DBOS.start_workflow_async(widget_then_step, "twice-told")
    await asyncio.wait_for(held.wait(), 20)
    await asyncio.wait_for(restarting.wait(), 20)  # after the engine's back-off (1 s)
    release.set()
    async with asyncio.timeout(20):
        assert await handle.get_result() == 10
    assert faults == ["after_the_widget"]
    assert written_at_reload == [True]
    assert calls == ["twice-told"]
    assert await widget_names(app_db) == ["twice-told"]
    steps = await DBOS.list_workflow_steps_async(handle.workflow_id)
    assert [(s["function_name"], s["output"]) for s in steps] == [
        ("add_widget", 1),
        ("after_the_widget", 10),
    ]
