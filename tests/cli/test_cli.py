"""The ``dbos-async`` command line against real Postgres: each command through typer's
``CliRunner`` (in a thread while the test's loop runs the engine), ``--json`` parsed, and the
installed executable in a subprocess; failures are one line with exit code 1, bad usage 2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from dbos_async import DBOS, Queue, SetWorkflowID
from dbos_async._core._registry import default_registry
from dbos_async._sysdb._urls import database_name
from dbos_async.cli import main
from dbos_async.cli._app import app
from tests.conftest import with_database
from tests.waypoints import Waypoints

waypoints = Waypoints()
cli_queue = Queue("cli_queue", worker_concurrency=1)
default_registry.queues.pop(cli_queue.name, None)  # declared only for this module's tests


@pytest.fixture(autouse=True)
def _module_state() -> Any:
    waypoints.clear()
    default_registry.add_queue(cli_queue)
    yield
    default_registry.queues.pop(cli_queue.name, None)


@DBOS.step()
async def cli_add(x: int, y: int) -> int:
    return x + y


@DBOS.step()
async def cli_fail() -> None:
    raise ValueError("cli boom")


@DBOS.workflow()
async def cli_child(x: int) -> int:
    return x * 10


@DBOS.workflow()
async def cli_parent(x: int) -> int:
    total = await cli_add(x, 1)
    return await cli_child(total)


@DBOS.workflow()
async def cli_failing() -> None:
    await cli_fail()


@DBOS.workflow()
async def cli_blocked() -> str:
    await cli_gate()
    return "released"


@DBOS.step()
async def cli_gate() -> None:
    waypoints.passed("blocked")
    await waypoints.gate("blocked").wait()


@DBOS.workflow()
async def cli_tick(scheduled_time: datetime, context: Any) -> str:
    return scheduled_time.isoformat()


def invoke(url: str, *args: str) -> Result:
    """Run ``dbos-async -s url args...`` in this process."""
    return CliRunner().invoke(app, ["-s", url, *args])


async def cli(url: str, *args: str) -> Result:
    """:func:`invoke` in a thread, so that this loop keeps running the engine."""
    return await asyncio.to_thread(invoke, url, *args)


async def cli_json(url: str, *args: str) -> Any:
    result = await cli(url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def status_of(workflow_id: str) -> str | None:
    status = await DBOS.get_workflow_status_async(workflow_id)
    return None if status is None else status.status


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


async def test_workflow_commands(dbos: type[DBOS], database_url: str) -> None:
    """list/get/steps show what workflows did; cancel, resume, fork and delete steer them."""
    with SetWorkflowID("cli-parent"):
        assert await cli_parent(4) == 50
    with SetWorkflowID("cli-failing"), pytest.raises(ValueError):
        await cli_failing()

    listed = await cli_json(database_url, "workflow", "list")
    ids = [w["workflow_id"] for w in listed]
    assert set(ids) == {"cli-parent", "cli-parent-2", "cli-failing"}
    assert ids[0] == "cli-failing"  # newest first
    assert [w["created_at"] for w in listed] == sorted(
        (w["created_at"] for w in listed), reverse=True
    )
    oldest = await cli_json(database_url, "workflow", "list", "--oldest-first", "--limit", "1")
    assert [w["workflow_id"] for w in oldest] == ["cli-parent"]
    errors = await cli_json(database_url, "workflow", "list", "-S", "ERROR")
    assert [(w["workflow_id"], w["error"]) for w in errors] == [
        ("cli-failing", "ValueError: cli boom")
    ]
    named = await cli_json(database_url, "workflow", "list", "--name", "cli_child")
    assert [w["workflow_id"] for w in named] == ["cli-parent-2"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await cli_json(database_url, "workflow", "list", "--start-time", future) == []

    status = await cli_json(database_url, "workflow", "get", "cli-parent")
    assert status["status"] == "SUCCESS" and status["output"] == 50
    assert status["input"] == {"args": [4], "kwargs": {}}
    assert isinstance(status["created_at"], int) and status["created_at"] > 1_600_000_000_000

    steps = await cli_json(database_url, "workflow", "steps", "cli-parent")
    assert [(s["function_id"], s["function_name"]) for s in steps][:2] == [
        (1, "cli_add"),
        (2, "cli_child"),
    ]
    assert steps[0]["output"] == 5 and steps[0]["duration_ms"] >= 0
    assert steps[1]["child_workflow_id"] == "cli-parent-2"
    failed = await cli_json(database_url, "workflow", "steps", "cli-failing")
    assert failed[0]["error"] == "ValueError: cli boom"

    table = await cli(database_url, "workflow", "list")
    assert table.exit_code == 0 and "cli-failing" in table.stdout

    for command in ("get", "steps", "cancel", "resume", "delete", "fork"):
        one_line_error(
            await cli(database_url, "workflow", command, "no-such-id"), "no-such-id", "not exist"
        )

    blocked = await DBOS.start_workflow_async(cli_blocked)
    await waypoints.reached("blocked")
    result = await cli(database_url, "workflow", "cancel", blocked.workflow_id)
    assert result.exit_code == 0, result.output
    assert await status_of(blocked.workflow_id) == "CANCELLED"
    waypoints.gate("blocked").set()
    result = await cli(database_url, "workflow", "resume", blocked.workflow_id)
    assert result.exit_code == 0, result.output
    assert await blocked.get_result() == "released"

    fork = await cli_json(database_url, "workflow", "fork", "cli-parent", "--step", "2")
    forked = await DBOS.retrieve_workflow_async(fork["workflow_id"])
    assert await forked.get_result() == 50
    forked_status = await forked.get_status()
    assert forked_status is not None and forked_status.forked_from == "cli-parent"
    assert (await cli(database_url, "workflow", "fork", "cli-parent", "--step", "0")).exit_code == 2

    result = await cli(database_url, "workflow", "delete", "cli-failing")
    assert result.exit_code == 0, result.output
    assert await DBOS.list_workflows_async(workflow_ids=["cli-failing"]) == []


async def test_queue_and_maintenance_commands(dbos: type[DBOS], database_url: str) -> None:
    """queue list counts each queue's work by status and executor; queue workflows lists it;
    gc deletes old finished workflows and timeout cancels old unfinished ones."""
    await DBOS.register_queue_async("cli_registered", global_concurrency=3)
    running = await cli_queue.enqueue_async(cli_blocked)
    await waypoints.reached("blocked")
    waiting = await cli_queue.enqueue_async(cli_parent, 1)

    queues = {q["name"]: q for q in await cli_json(database_url, "queue", "list")}
    declared = queues["cli_queue"]
    assert declared["source"] == "declared"
    assert declared["settings"]["worker_concurrency"] == 1
    assert (declared["enqueued"], declared["running"]) == (1, 1)
    assert declared["running_by_executor"] == {DBOS.executor_id: 1}
    registered = queues["cli_registered"]
    assert registered["source"] == "registered"
    assert registered["settings"]["concurrency"] == 3 and registered["enqueued"] == 0

    on_queue = await cli_json(database_url, "queue", "workflows", "cli_queue")
    assert [w["workflow_id"] for w in on_queue] == [running.workflow_id, waiting.workflow_id]
    table = await cli(database_url, "queue", "list")
    assert table.exit_code == 0 and "cli_registered" in table.stdout

    later = str(int(time.time() * 1000) + 60_000)
    assert await cli_json(database_url, "timeout", "--cutoff", later) == {"cancelled": 2}
    assert await status_of(running.workflow_id) == "CANCELLED"
    waypoints.gate("blocked").set()
    with SetWorkflowID("cli-kept"):
        await cli_child(1)
    assert await cli_json(database_url, "gc", "--rows", "1") == {"deleted": 2}
    remaining = await DBOS.list_workflows_async()
    assert [w.workflow_id for w in remaining] == ["cli-kept"]
    assert (await cli(database_url, "gc")).exit_code == 2
    assert (await cli(database_url, "timeout", "--cutoff", "soon")).exit_code == 2


async def test_schedule_commands(dbos: type[DBOS], database_url: str) -> None:
    """schedule list/pause/resume/trigger/backfill act on stored schedules."""
    await DBOS.create_schedule_async(
        schedule_name="cli-hourly", workflow_fn=cli_tick, schedule="0 * * * *"
    )
    listed = await cli_json(database_url, "schedule", "list")
    assert [(s["schedule_name"], s["status"]) for s in listed] == [("cli-hourly", "ACTIVE")]
    assert (await cli(database_url, "schedule", "pause", "cli-hourly")).exit_code == 0
    paused = await cli_json(database_url, "schedule", "list", "--status", "PAUSED")
    assert [s["schedule_name"] for s in paused] == ["cli-hourly"]
    assert (await cli(database_url, "schedule", "resume", "cli-hourly")).exit_code == 0
    schedule = await DBOS.get_schedule_async("cli-hourly")
    assert schedule is not None and schedule["status"] == "ACTIVE"

    triggered = await cli_json(database_url, "schedule", "trigger", "cli-hourly")
    handle = await DBOS.retrieve_workflow_async(triggered["workflow_id"])
    assert isinstance(await handle.get_result(), str)
    filled = await cli_json(
        database_url,
        "schedule",
        "backfill",
        "cli-hourly",
        "--start",
        "2024-01-01T00:30:00",
        "--end",
        "2024-01-01T03:30:00",
    )
    assert len(filled["workflow_ids"]) == 3
    one_line_error(await cli(database_url, "schedule", "pause", "nope"), "nope")


def test_migrate_and_reset(admin_url: str) -> None:
    """migrate creates and upgrades a system database; reset -y drops and recreates it."""
    url = with_database(admin_url, f"dbos_async_cli_{os.getpid()}")
    try:
        assert invoke(url, "migrate").exit_code == 0
        assert invoke(url, "migrate").exit_code == 0  # again: nothing to do
        assert invoke(url, "workflow", "list", "--json").stdout.strip() == "[]"
        result = invoke(url, "migrate", "--app-db", url)
        assert result.exit_code == 0, result.output
        assert "transaction outputs" in result.stdout
        result = invoke(url, "reset", "-y")
        assert result.exit_code == 0, result.output
        assert invoke(url, "workflow", "list", "--json").stdout.strip() == "[]"
        refused = CliRunner().invoke(app, ["-s", url, "reset"], input="n\n")
        assert refused.exit_code == 1  # not confirmed
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(admin_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


def test_bad_urls_and_usage(admin_url: str) -> None:
    """An unreachable server, a non-Postgres URL and a database without DBOS's tables are
    one-line errors (exit 1); bad usage exits 2."""
    one_line_error(invoke("postgresql://postgres@127.0.0.1:1/x", "workflow", "list"), "unavailable")
    one_line_error(invoke("mysql://x@y/z", "workflow", "list"), "postgresql://")
    one_line_error(invoke(admin_url, "workflow", "list"), "no dbos_async tables")
    assert invoke(admin_url, "workflow", "list", "--status", "NOPE").exit_code == 2
    assert invoke(admin_url, "workflow", "list", "--start-time", "yesterday").exit_code == 2
    assert invoke(admin_url, "no-such-command").exit_code == 2


def test_executable_in_a_subprocess(database_url: str) -> None:
    """The installed ``dbos-async`` (and ``python -m dbos_async``) report an unknown workflow
    in one line and exit 1, and print their version."""
    env = {**os.environ, "DBOS_SYSTEM_DATABASE_URL": database_url}
    exe = Path(sys.executable).with_name("dbos-async")
    done = subprocess.run(
        [str(exe), "workflow", "get", "missing-id"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        next(line for line in done.stderr.splitlines() if "missing-id" in line)
    ]
    assert done.stdout == ""
    version = subprocess.run(
        [sys.executable, "-m", "dbos_async", "version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip()[0].isdigit()


def test_without_the_cli_extra(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """Without typer or rich, the command says which extra to install, in one line, and exits 1."""
    monkeypatch.setitem(sys.modules, "typer", None)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "dbos-async needs its command-line extra: pip install 'dbos_async[cli]'"
    )


def test_postgres_start_url_and_stop(tmp_path: Path) -> None:
    """postgres start runs the embedded server past its own exit and prints the system
    database URL; url prints it again, and stop stops it (then url fails in one line)."""
    exe = str(Path(sys.executable).with_name("dbos-async"))
    data_dir = str(tmp_path / "pgdata")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)

    started = run("postgres", "start", "--data-dir", data_dir)
    try:
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("postgresql://postgres@/dbos_async_sys?host=")
        assert run("postgres", "url", "--data-dir", data_dir).stdout.strip() == url
        migrated = run("-s", url, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert json.loads(run("-s", url, "workflow", "list", "--json").stdout) == []
    finally:
        stopped = run("postgres", "stop", "--data-dir", data_dir, "--force")
    assert stopped.returncode == 0, stopped.stderr
    gone = run("postgres", "url", "--data-dir", data_dir)
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1
