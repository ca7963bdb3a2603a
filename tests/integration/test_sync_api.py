"""The sync API: DBOS.launch() on a background loop, sync workflows and steps on worker threads."""

from __future__ import annotations

import asyncio
import threading

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSBlockingCallInLoopError,
    DBOSMaxStepRetriesExceeded,
    SetWorkflowID,
)
from tests.conftest import make_config

threads_seen: list[str] = []
ran: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    threads_seen.clear()
    ran.clear()


@DBOS.step()
def sync_double(x: int) -> int:
    threads_seen.append(threading.current_thread().name)
    ran.append(f"double-{x}")
    return x * 2


@DBOS.step(retries_allowed=True, interval_seconds=0.001, max_attempts=2)
def sync_broken() -> None:
    ran.append("broken")
    raise RuntimeError("broken")


@DBOS.workflow()
def sync_workflow(x: int) -> int:
    threads_seen.append(threading.current_thread().name)
    return sync_double(x) + sync_double(x + 1)


@DBOS.workflow()
def sync_failing() -> None:
    sync_broken()


def test_sync_workflow_with_sync_steps(dbos_sync: type[DBOS]) -> None:
    with SetWorkflowID("sync-1"):
        assert sync_workflow(3) == 14
    with SetWorkflowID("sync-1"):
        assert sync_workflow(3) == 14
    assert ran == ["double-3", "double-4"]
    assert threads_seen[0].startswith("dbos-workflow")
    assert all(name.startswith("dbos-step") for name in threads_seen[1:])
    status = DBOS.get_workflow_status("sync-1")
    assert status is not None and status.status == "SUCCESS" and status.output == 14


def test_sync_start_workflow_and_handle(dbos_sync: type[DBOS]) -> None:
    handle = DBOS.start_workflow(sync_workflow, 5)
    assert handle.get_result() == 22
    status = handle.get_status()
    assert status is not None and status.status == "SUCCESS"
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == 22
    assert DBOS.get_result(handle.workflow_id) == 22


def test_sync_step_retries_then_fails(dbos_sync: type[DBOS]) -> None:
    with pytest.raises(DBOSMaxStepRetriesExceeded):
        sync_failing()
    assert ran == ["broken", "broken"]


@DBOS.step()
async def async_step(x: int) -> int:
    return x + 100


@DBOS.workflow()
def sync_workflow_running_steps(x: int) -> int:
    a = DBOS.run_step(None, lambda: x * 3)
    b = DBOS.run_step({"name": "async_via_run_step"}, async_step, x)
    return int(a) + int(b)


def test_sync_run_step_with_sync_and_async_functions(dbos_sync: type[DBOS]) -> None:
    assert sync_workflow_running_steps(1) == 104


async def test_sync_api_inside_the_event_loop_names_the_async_form(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSBlockingCallInLoopError) as raised:
        sync_workflow(1)
    assert "start_workflow_async" in str(raised.value)
    with pytest.raises(DBOSBlockingCallInLoopError) as raised:
        DBOS.get_workflow_status("anything")
    assert "get_workflow_status_async" in str(raised.value)


async def test_sync_workflow_started_from_async_code(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(sync_workflow, 2)
    assert await handle.get_result() == 10


@DBOS.workflow()
async def async_calls_sync_step() -> int:
    return sync_double(1)


async def test_sync_step_called_on_the_loop_names_run_step_async(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSBlockingCallInLoopError) as raised:
        await async_calls_sync_step()
    assert "run_step_async" in str(raised.value)


async def test_launch_from_inside_a_running_loop(database_url: str) -> None:
    """DBOS.launch() called from async code runs the engine on a background loop."""
    DBOS(config=make_config(database_url))
    DBOS.launch()
    try:
        handle = await DBOS.start_workflow_async(async_step_workflow, 1)
        assert await handle.get_result() == 101
        assert DBOS._loop_thread is not None
        assert DBOS._loop_thread.loop is not asyncio.get_running_loop()
    finally:
        await DBOS.destroy_async()


@DBOS.workflow()
async def async_step_workflow(x: int) -> int:
    return await async_step(x)


def test_destroy_then_relaunch_keeps_registered_functions(database_url: str) -> None:
    for _ in range(3):
        DBOS(config=make_config(database_url))
        DBOS.launch()
        try:
            assert sync_workflow(1) == 6
        finally:
            DBOS.destroy()


step_entered = threading.Event()
step_gate = threading.Event()
body_left = threading.Event()


@DBOS.step()
def gated_step() -> str:
    step_entered.set()
    step_gate.wait(30)
    return "through"


@DBOS.workflow()
def gated_sync_workflow() -> str:
    try:
        return gated_step()
    finally:
        body_left.set()


def test_destroy_releases_a_sync_workflow_blocked_on_its_step(database_url: str) -> None:
    """Stopping must not strand the workflow's thread (it would keep the process alive)."""
    for event in (step_entered, step_gate, body_left):
        event.clear()
    DBOS(config=make_config(database_url))
    DBOS.launch()
    try:
        handle = DBOS.start_workflow(gated_sync_workflow)
        assert step_entered.wait(10)
    finally:
        DBOS.destroy()
    assert body_left.wait(10), "the sync workflow's thread is still blocked"
    step_gate.set()

    async def status() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(
                await conn.fetchval(
                    "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
                    handle.workflow_id,
                )
            )
        finally:
            await conn.close()

    assert asyncio.run(status()) == "PENDING"  # left for recovery
