"""The throwaway Postgres helper: a private server that survives fast and immediate restarts."""

from __future__ import annotations

import asyncpg

from ..throwaway_postgres import ThrowawayPostgres, skip_without_postgres_binaries

skip_without_postgres_binaries()


async def _rows(url: str) -> list[int]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [row["n"] for row in await conn.fetch("SELECT n FROM kept ORDER BY n")]
    finally:
        await conn.close()


async def test_data_survives_fast_and_immediate_restarts() -> None:
    async with ThrowawayPostgres() as pg:
        assert pg.url.startswith("postgresql://postgres@127.0.0.1:")
        conn = await asyncpg.connect(pg.url, timeout=10)
        try:
            await conn.execute("CREATE TABLE kept (n int PRIMARY KEY)")
            await conn.execute("INSERT INTO kept VALUES (1), (2)")
            assert await conn.fetchval("SHOW max_connections") == "300"
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        finally:
            await conn.close()

        await pg.restart("fast")
        assert await _rows(pg.url) == [1, 2]

        conn = await asyncpg.connect(pg.url, timeout=10)
        try:
            await conn.execute("INSERT INTO kept VALUES (3)")  # committed, then a crash
        finally:
            await conn.close()
        await pg.restart("immediate")
        await pg.wait_ready(10)
        assert await _rows(pg.url) == [1, 2, 3]
        data_dir = pg.data_dir

    assert not data_dir.exists()
