"""The embedded Postgres starts in the working directory, accepts asyncpg and stops at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pgserver", reason="pgserver not installed (pip install dbos_async[embedded])")

PROJECT_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import asyncpg
    from dbos_async._embedded import embedded_database_url

    async def main() -> None:
        url = embedded_database_url()
        assert embedded_database_url() == url
        conn = await asyncpg.connect(url)
        listener = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            got = asyncio.get_running_loop().create_future()
            await listener.add_listener(
                "embedded_test", lambda c, pid, channel, payload: got.set_result(payload)
            )
            await conn.execute("SELECT pg_notify('embedded_test', 'ping')")
            assert await asyncio.wait_for(got, 10) == "ping"
        finally:
            await listener.close()
            await conn.close()
        print("OK")

    asyncio.run(main())
    """
)


def test_embedded_postgres_round_trip(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
            ),
        },
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "OK"
    pgdata = tmp_path / ".dbos_async" / "pgdata"
    assert (pgdata / "PG_VERSION").is_file()
    # The server stopped with the process: pg_ctl removes postmaster.pid on a clean stop.
    assert not (pgdata / "postmaster.pid").exists()
