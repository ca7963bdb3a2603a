"""Launch, destroy, migrations and the system database's creation and reset."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dbos_async import DBOS, DBOSInitializationError
from dbos_async._sysdb import connect_database
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
            assert await check.fetchval("SELECT count(*) FROM dbos.dbos_migrations") == 1
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
    DBOS(config=make_config("postgresql://postgres@127.0.0.1:1/nowhere"))
    with pytest.raises(DBOSInitializationError):
        await DBOS.launch_async()
    assert DBOS._runtime is None


async def test_launch_async_runs_on_the_callers_loop(dbos: type[DBOS]) -> None:
    assert DBOS._runtime is not None
    assert DBOS._runtime.loop is asyncio.get_running_loop()
    assert await answer() == 42
