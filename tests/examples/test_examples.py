"""Every program in ``examples/`` runs, as a newcomer would run it, and says what it should.

Each script runs in a subprocess against the test server, on a system database of its own
(``DBOS_SYSTEM_DATABASE_URL``, cloned from the session's migrated template). A script runs
twice in a row on the same database (each example promises that is safe) and must exit 0
both times, printing the lines its docstring promises. The web apps are servers: each is
started, answers one request, and stops on SIGINT. All the scripts run at once, in one
module fixture, so the whole set takes about as long as the slowest; each wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import with_database

# The module fixture runs every script (twice) before the first test: a longer limit than one
# test's, under the bound each run has.
pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(240)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_SECONDS = 60.0
"""The longest one run of a script may take."""
SERVERS = {"fastapi_app", "flask_app"}

# What each run prints, as regular expressions each matching a whole line: (first, second run).
_HELLO = [
    r"booked: \{'order': 'order-1', 'seat': 'seat-12A', 'receipt': 'receipt-order-1', .*\}",
    r"same ID again, steps not re-run: True",
    r"status: SUCCESS",
]
_QUEUES = [
    r"concurrency: 6 tasks, at most 2 at once",
    r"rate limit: 6 tasks at 3 per second took \d+\.\ds",
    r"priority: enqueued with priorities 3, 1, 2; ran in order 1, 2, 3",
    r"partitions: at most 1 task per customer at once, customers in parallel: .*",
]
_MESSAGING = [
    r"status: awaiting payment",
    r"result: order-\w+ shipped",
    r"status: paid 42 by card",
    r"all events: \{'status': 'paid 42 by card'\}",
]
_STREAMS = [
    r"  live: ALPHA",
    r"  live: BETA",
    r"  live: GAMMA",
    r"chunks written: 3",
    r"from offset 1: \['BETA', 'GAMMA'\]",
]
_SCHEDULES = [
    *[r"tick: \d\d:\d\d:\d\d"] * 3,
    r"triggered: billing checked at \d\d:\d\d:\d\d",
    r"backfilled 3 ticks \({ran} run by this run\): \['billing checked at 09:00:01', .*\]",
    r"schedules left: \[\]",
]
_TRANSACTIONS = [
    r"before: \{{'ada': {ada}, 'bob': {bob}\}}",
    r"moved 10 from ada to bob, {left} left",
    r"same ID again: moved 10 from ada to bob, {left} left",
    r"after, moved once: \{{'ada': {left}, 'bob': {bob_after}\}}",
    r"refused: bob cannot pay 1000000",
    r"after a refused transfer: \{{'ada': {left}, 'bob': {bob_after}\}}",
]
_CLIENT = [
    r"worker: ready",
    r"enqueued: [0-9a-f-]{36}",
    r"stage: waiting for an address",
    r"result: order-7 shipped to 12 Rue de Rivoli",
    r"status: SUCCESS",
    r"worker exited with 0",
]
_DEBOUNCER = [
    r"5 calls, one workflow: True",
    r"indexed doc-\w+: 'Hello'",
    r"reindex ran 1 time\(s\)",
    r"after it ran, a new call starts a new one: indexed doc-\w+: 'Hello, world'",
]
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "hello": (_HELLO, _HELLO),
    "queues": (_QUEUES, _QUEUES),
    "messaging": (_MESSAGING, _MESSAGING),
    "streams": (_STREAMS, _STREAMS),
    "schedules": (
        [line.format(ran=3) for line in _SCHEDULES],
        [line.format(ran=0) for line in _SCHEDULES],
    ),
    "transactions": (
        [line.format(ada=100, bob=0, left=90, bob_after=10) for line in _TRANSACTIONS],
        [line.format(ada=90, bob=10, left=80, bob_after=20) for line in _TRANSACTIONS],
    ),
    "client": (_CLIENT, _CLIENT),
    "debouncer": (_DEBOUNCER, _DEBOUNCER),
}


@dataclass
class Run:
    """One run of a script: its exit status and what it wrote."""

    returncode: int | None
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"returncode {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS_", "DBOS__"))}
    return {**env, "DBOS_SYSTEM_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **extra}


async def _run_script(name: str, env: dict[str, str], cwd: Path) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{name}.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_SECONDS)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        err += f"\n(killed: still running after {RUN_SECONDS}s)".encode()
    return Run(proc.returncode, out.decode(), err.decode())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _serve_once(name: str, env: dict[str, str], cwd: Path) -> Run:
    """Start the server script, POST one order once it answers, stop it with SIGINT; the
    order's response body is appended to stdout as ``RESPONSE <status> <body>``."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{name}.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "PORT": str(port)},
        cwd=cwd,
    )
    answer = "RESPONSE none"
    try:
        async with (
            asyncio.timeout(RUN_SECONDS),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
        ):
            while proc.returncode is None:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/workflows/none")).status_code == 404:
                        break
                await asyncio.sleep(0.05)
            response = await client.post("/orders/smoke-1")
            body = json.dumps(response.json(), sort_keys=True, separators=(",", ":"))
            answer = f"RESPONSE {response.status_code} {body}"
    except (TimeoutError, httpx.HTTPError) as error:
        answer = f"RESPONSE failed: {error!r}"
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_SECONDS)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    return Run(proc.returncode, out.decode() + answer + "\n", err.decode())


async def _run_all(admin_url: str, template: str, prefix: str, cwd: Path) -> dict[str, list[Run]]:
    names = sorted(path.stem for path in EXAMPLES.glob("*.py") if path.stem != "__init__")
    conn = await asyncpg.connect(admin_url)
    try:
        for name in names:  # one at a time: a template may be cloned by one CREATE at once
            await conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{prefix}_{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()

    async def run(name: str) -> list[Run]:
        env = _env(with_database(admin_url, f"{prefix}_{name}"))
        if name in SERVERS:
            return [await _serve_once(name, env, cwd)]
        return [await _run_script(name, env, cwd), await _run_script(name, env, cwd)]

    runs = await asyncio.gather(*(run(name) for name in names))
    return dict(zip(names, runs, strict=True))


async def _drop_all(admin_url: str, prefix: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix + "_"
        )
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def runs(
    admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, list[Run]]]:
    """Every example's runs, all run at once, each on a database of its own."""
    prefix = f"dbos_async_ex_{os.getpid()}"
    cwd = tmp_path_factory.mktemp("examples")
    try:
        yield asyncio.run(_run_all(admin_url, template_database, prefix, cwd))
    finally:
        asyncio.run(_drop_all(admin_url, prefix))


def _assert_lines(run: Run, patterns: list[str]) -> None:
    """Each pattern matches a whole line of stdout, in order."""
    lines = iter(run.stdout.splitlines())
    for pattern in patterns:
        assert any(re.fullmatch(pattern, line) for line in lines), (
            f"no line matching {pattern!r} (in order):\n{run.describe()}"
        )


def test_every_example_is_checked() -> None:
    """A new example gets expectations here (or is a server)."""
    scripts = {path.stem for path in EXAMPLES.glob("*.py")} - {"__init__"}
    assert scripts == set(EXPECTED) | SERVERS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_twice(runs: dict[str, list[Run]], name: str) -> None:
    """The script exits 0 twice in a row on one database, printing what it shows."""
    for run, patterns in zip(runs[name], EXPECTED[name], strict=True):
        assert run.returncode == 0, run.describe()
        assert "Traceback" not in run.stderr, run.describe()
        _assert_lines(run, patterns)


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_web_example_serves_an_order(runs: dict[str, list[Run]], name: str) -> None:
    """The server starts, runs an order's workflow for a POST, and stops cleanly on SIGINT."""
    [run] = runs[name]
    _assert_lines(
        run,
        [
            r"  step 1: seat reserved for smoke-1",
            r"  step 2: card charged for smoke-1",
            r'RESPONSE 200 \{"order":"smoke-1","receipt":"receipt-smoke-1","seat":"seat-12A",'
            r'"workflow_id":"[0-9a-f-]{36}"\}',
        ],
    )
    assert run.returncode == 0, run.describe()
    assert "Traceback" not in run.stderr, run.describe()
