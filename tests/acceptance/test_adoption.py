"""A fleet finishes the work of a member that died for good, or that stalled and came back.

Real processes run ``apps/fleet_app.py``, each under its own executor ID, heartbeating every
0.2 s and adopting an executor that stayed silent for 2 s. The test reads what each process
printed, the side-effect log the steps append to, and what the system database recorded.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import pytest

from dbos_async import DBOS
from dbos_async._core._serialization import Codec

from ._processes import Child, Children, child_env
from ._records import recorded_steps, workflow_rows

pytestmark = pytest.mark.acceptance

APP = "fleet_app.py"
ADOPTION_TIMEOUT = 2.0  # the app's executor_adoption_timeout_sec
ADOPTED_WITHIN = ADOPTION_TIMEOUT + 8.0
"""How long after an executor goes silent its workflows may take to be adopted and finished."""


async def _member(
    children: Children, mode: str, database_url: str, executor: str, log: Path, **extra: str
) -> Child:
    """A fleet member running ``fleet_app.py <mode>`` as executor ``executor``."""
    env = child_env(database_url, APP_EXECUTOR_ID=executor, APP_SIDE_EFFECT_LOG=str(log), **extra)
    return await children.spawn(APP, mode, env=env)


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{kind}-{i}" for kind in ("direct", "queued") for i in range(count)]


async def _lines(child: Child, prefix: str, count: int, seconds: float) -> set[str]:
    """The workflow IDs of the next ``count`` lines ``<prefix> <id>`` the child prints."""
    async with asyncio.timeout(seconds):
        return {await child.read_until(f"{prefix} ") for _ in range(count)}


def _side_effects(log: Path) -> list[tuple[str, str, str]]:
    """(step, workflow ID, executor) per line of the side-effect log, in order."""
    return [
        (step, workflow_id, executor)
        for step, workflow_id, executor, _pid in (
            line.split() for line in log.read_text().splitlines()
        )
    ]


async def _recorded_outputs(database_url: str, workflow_id: str, function_id: int) -> object:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT output, serialization FROM dbos.operation_outputs "
            "WHERE workflow_uuid = $1 AND function_id = $2",
            workflow_id,
            function_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return Codec().loads(row["output"], row["serialization"])


async def _stop(child: Child) -> None:
    child.proc.send_signal(signal.SIGTERM)
    assert await child.exit_code() == 0, child.describe()
    assert "Traceback" not in child.stderr, child.describe()


async def _results(ids: list[str], seconds: float) -> list[object]:
    """Wait (in this process's runtime) for the workflows' recorded results."""
    async with asyncio.timeout(seconds):
        return [await (await DBOS.retrieve_workflow_async(wid)).get_result() for wid in ids]


async def test_a_dead_executors_workflows_are_adopted(
    dbos: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """SIGKILL a process for good: another finishes its workflows, each step's effect once."""
    log = tmp_path / "effects.log"
    ids = _ids("dead", 3)
    async with Children(tmp_path) as children:
        doomed = await _member(
            children,
            "start",
            database_url,
            "fleet-a",
            log,
            APP_PREFIX="dead",
            APP_COUNT="3",
            APP_STEP_SECONDS="60",
        )
        assert await _lines(doomed, "IN_STEP", len(ids), 20) == set(ids)
        survivor = await _member(children, "worker", database_url, "fleet-b", log)
        await survivor.read_until("READY")
        await doomed.sigkill()

        assert await _results(ids, ADOPTED_WITHIN) == [0, 1, 2, 0, 1, 2]
        await _stop(survivor)

    rows = await workflow_rows(database_url, ids)
    assert {(row["status"], row["executor_id"]) for row in rows.values()} == {
        ("SUCCESS", "fleet-b")
    }
    for workflow_id in ids:
        assert await recorded_steps(database_url, workflow_id) == [(1, "first"), (2, "slow")]
    # The first step ran once, before the kill; the slow step ran once, in the adopter.
    effects = _side_effects(log)
    assert sorted(e for e in effects if e[0] == "first") == [
        ("first", workflow_id, "fleet-a") for workflow_id in sorted(ids)
    ]
    assert sorted(e for e in effects if e[0] == "slow") == [
        ("slow", workflow_id, "fleet-b") for workflow_id in sorted(ids)
    ]


async def test_a_stalled_executor_finds_its_workflows_taken(
    dbos: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """SIGSTOP a process until the fleet adopted its work, then let it go on: its steps finish,
    but their checkpoints are refused, so every step output is the adopter's, recorded once."""
    log = tmp_path / "effects.log"
    ids = _ids("stalled", 2)
    async with Children(tmp_path) as children:
        # The adopter's slow step outlasts the stalled one's: the stalled process resumes and
        # tries to record its step before the adopter has recorded anything.
        adopter = await _member(
            children, "worker", database_url, "fleet-b", log, APP_STEP_SECONDS="3"
        )
        await adopter.read_until("READY")
        stalled = await _member(
            children,
            "start",
            database_url,
            "fleet-a",
            log,
            APP_PREFIX="stalled",
            APP_COUNT="2",
            APP_STEP_SECONDS="1",
        )
        # The adopter may claim some of the queued ones itself; that's fine.
        started_in_stalled = await _lines(stalled, "IN_STEP", 2, 20)
        os.kill(stalled.proc.pid, signal.SIGSTOP)
        try:
            adopted = await _lines(adopter, "IN_STEP", len(ids), ADOPTED_WITHIN)
        finally:
            os.kill(stalled.proc.pid, signal.SIGCONT)
        assert started_in_stalled <= adopted
        # The stalled executions complete their step (an at-least-once re-run) ...
        assert started_in_stalled <= await _lines(stalled, "SLOW_DONE", len(started_in_stalled), 20)
        # ... but only the adopter's outcomes are recorded.
        assert await _results(ids, 20) == [0, 1, 0, 1]
        await _stop(adopter)
        await _stop(stalled)
        assert "is now run by executor fleet-b" in stalled.stderr

    rows = await workflow_rows(database_url, ids)
    assert {(row["status"], row["executor_id"]) for row in rows.values()} == {
        ("SUCCESS", "fleet-b")
    }
    for workflow_id in ids:
        assert await recorded_steps(database_url, workflow_id) == [(1, "first"), (2, "slow")]
        assert await _recorded_outputs(database_url, workflow_id, 2) == "fleet-b"
