"""Launch, destroy, migrations and the system database's creation and reset."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dbos_async import DBOS, DBOSInitializationError
from dbos_async._core._runtime import current_runtime
from dbos_async._sysdb import connect_database
from dbos_async._sysdb._database import _migrations
from tests.conftest import make_config, with_database


@DBOS.workflow()
async def answer() -> int:
    return 42


async def _database_exists(admin_url: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def test_concurrent_launches_create_and_migrate_once(admin_url: str) -> None:
    """Two processes launching at once on a missing database must not race."""
    url = with_database(admin_url, "dbos_async_migration_race")
    conn = await asyncpg.connect(admin_url)
    await conn.execute('DROP DATABASE IF EXISTS "dbos_async_migration_race" WITH (FORCE)')
    await conn.close()
    try:
        databases = await asyncio.gather(*(connect_database(url) for _ in range(4)))
        for db in databases:
            await db.close()
        check = await asyncpg.connect(url)
        try:
            applied = await check.fetchval("SELECT count(*) FROM dbos.dbos_migrations")
            assert applied == len(_migrations())  # each applied once
        finally:
            await check.close()
    finally:
        conn = await asyncpg.connect(admin_url)
        await conn.execute('DROP DATABASE IF EXISTS "dbos_async_migration_race" WITH (FORCE)')
        await conn.close()


def test_reset_system_database_drops_it_and_launch_recreates_it(admin_url: str) -> None:
    name = "dbos_async_reset_test"
    url = with_database(admin_url, name)
    DBOS(config=make_config(url))
    DBOS.launch()  # creates and migrates the database
    DBOS.destroy()
    assert asyncio.run(_database_exists(admin_url, name))
    DBOS(config=make_config(url))
    DBOS.reset_system_database()
    assert not asyncio.run(_database_exists(admin_url, name))
    DBOS.launch()
    try:
        assert asyncio.run(_database_exists(admin_url, name))
    finally:
        DBOS.destroy()
        DBOS(config=make_config(url))
        DBOS.reset_system_database()


async def test_reset_after_launch_is_refused(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSInitializationError):
        DBOS.reset_system_database()


async def test_configuring_twice_while_launched_is_refused(
    dbos: type[DBOS], database_url: str
) -> None:
    with pytest.raises(DBOSInitializationError):
        DBOS(config=make_config(database_url))


async def test_unreachable_database_is_an_initialization_error() -> None:
    """Launch waits for an unreachable database up to the retry limit, then gives up."""
    DBOS(
        config=make_config(
            "postgresql://postgres@127.0.0.1:1/nowhere", system_database_retry_limit_sec=0.3
        )
    )
    with pytest.raises(DBOSInitializationError, match="Cannot open the system database"):
        await DBOS.launch_async()
    assert DBOS._runtime is None


async def test_launch_async_runs_on_the_callers_loop(dbos: type[DBOS]) -> None:
    assert DBOS._runtime is not None
    assert DBOS._runtime.loop is asyncio.get_running_loop()
    assert await answer() == 42


async def test_a_database_of_the_first_release_is_upgraded_with_its_workflows(
    admin_url: str,
) -> None:
    """Migrations added later apply at launch on a database that only has the first one."""
    name = "dbos_async_upgrade"
    url = with_database(admin_url, name)
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        old = await asyncpg.connect(url)
        try:
            first_version, first_sql = _migrations()[0]
            await old.execute("CREATE SCHEMA dbos; SET search_path TO dbos")
            await old.execute(first_sql)
            await old.execute(
                "CREATE TABLE dbos_migrations (version bigint PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now());"
                f"INSERT INTO dbos_migrations (version) VALUES ({first_version});"
                "INSERT INTO workflow_status (workflow_uuid, status, name, created_at, updated_at)"
                " VALUES ('old-wf', 'SUCCESS', 'answer', 1, 1);"
                "INSERT INTO operation_outputs (workflow_uuid, function_id, function_name)"
                " VALUES ('old-wf', 1, 'step')"
            )
        finally:
            await old.close()
        db = await connect_database(url)
        try:
            applied = await db.fetch("SELECT version FROM dbos_migrations ORDER BY version")
            assert [row["version"] for row in applied] == [v for v, _ in _migrations()]
            assert await db.fetchval("SELECT count(*) FROM operation_outputs") == 1
            assert await db.fetchval("SELECT status FROM workflow_status") == "SUCCESS"
        finally:
            await db.close()
    finally:
        admin_again = await asyncpg.connect(admin_url)
        await admin_again.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_again.close()
        await admin.close()


slow_cleanup = {"started": asyncio.Event(), "release": asyncio.Event()}


@DBOS.workflow()
async def slow_to_stop() -> None:
    slow_cleanup["started"].set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await slow_cleanup["release"].wait()  # cleanup that takes a while
        raise


async def test_a_destroy_whose_caller_gives_up_still_stops_the_engine(database_url: str) -> None:
    """The caller of ``destroy_async`` stops waiting (its deadline passed) while the engine
    waits for a workflow's cleanup: the engine still stops and closes (it was left running,
    detached, its pool open, with nothing able to stop it)."""
    slow_cleanup.update(started=asyncio.Event(), release=asyncio.Event())
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    runtime = current_runtime()
    await DBOS.start_workflow_async(slow_to_stop)
    await slow_cleanup["started"].wait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(DBOS.destroy_async(), 0.2)  # stopping waits for the cleanup
    slow_cleanup["release"].set()
    async with asyncio.timeout(10):
        while not runtime.db._closed:  # noqa: ASYNC110 (no event for "closed")
            await asyncio.sleep(0.01)


async def test_a_statement_that_ends_while_the_database_closes_gives_its_connection_back(
    database_url: str,
) -> None:
    """A statement still running when the database closes hands its connection back to the
    pool, whose closing waits for it (it was kept for reuse: the closing waited out its 5 s
    limit for it, then terminated it)."""
    db = await connect_database(database_url, pool_size=2)
    in_flight, finish = asyncio.Event(), asyncio.Event()

    async def statement(conn: asyncpg.Connection) -> int:
        in_flight.set()
        await finish.wait()
        return int(await conn.fetchval("SELECT 1"))

    async with asyncio.timeout(10):
        running = asyncio.ensure_future(db.generic.run(statement))  # on a kept connection
        await in_flight.wait()
        closing = asyncio.ensure_future(db.close())
        await asyncio.sleep(0)  # (the closing has begun: it waits for the pool)
        finish.set()
        assert await running == 1
        await closing
    assert db._idle == db._idle_generic == []
