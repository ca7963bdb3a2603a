"""Streams, wait_first, cancellation and workflow timeouts, in one process against real Postgres."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from dbos_async._features._streams import next_values
from dbos_async.testing import Clock
from tests.conftest import make_config
from tests.integration._other_process import another_process, until_asked_to_be_told
from tests.waypoints import Waypoints

waypoints = Waypoints()
ran: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    waypoints.clear()
    ran.clear()


@DBOS.step()
async def mark(name: str) -> None:
    ran.append(name)
    waypoints.passed(name)


@DBOS.step()
async def write_from_step(key: str, value: Any) -> None:
    await DBOS.write_stream_async(key, value)


@DBOS.workflow()
async def producer(count: int) -> str:
    for i in range(count):
        await DBOS.write_stream_async("numbers", i)
        if i == 1:
            await mark("two-written")
            await DBOS.recv_async("more", timeout_seconds=10)
    await write_from_step("numbers", "from a step")
    await DBOS.close_stream_async("numbers")
    await DBOS.recv_async("finish", timeout_seconds=10)
    return "produced"


async def test_stream_readers_get_values_in_order_and_see_the_close(dbos: type[DBOS]) -> None:
    with SetWorkflowID("stream-1"):
        handle = await DBOS.start_workflow_async(producer, 5)
    early = asyncio.ensure_future(_read_all("stream-1"))
    await waypoints.reached("two-written")
    await DBOS.send_async("stream-1", None, "more")
    expected = [0, 1, 2, 3, 4, "from a step"]
    assert await asyncio.wait_for(early, 10) == expected
    late = await _read_all("stream-1")  # a reader started late still gets everything
    assert late == expected
    await DBOS.send_async("stream-1", None, "finish")
    assert await handle.get_result() == "produced"


async def _read_all(workflow_id: str) -> list[Any]:
    return [value async for value in DBOS.read_stream_async(workflow_id, "numbers")]


@DBOS.workflow()
async def unclosed_writer() -> None:
    await DBOS.write_stream_async("s", "only")


async def test_stream_ends_when_its_workflow_finished_without_closing(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(unclosed_writer)
    await handle.get_result()
    assert [v async for v in DBOS.read_stream_async(handle.workflow_id, "s")] == ["only"]


@DBOS.workflow()
async def unclosed_writer_until_told() -> None:
    await DBOS.write_stream_async("s", "first")
    await DBOS.recv_async("end", timeout_seconds=30)


async def test_a_waiting_reader_ends_when_the_writer_ends_without_closing(
    dbos: type[DBOS], database_url: str
) -> None:
    """Readers here and in another process wait for the next value; the writer ends without
    closing the stream: both readers end at once (they waited for the 30 s safety sweep)."""
    async with another_process(database_url, "reader") as reader:
        handle = await DBOS.start_workflow_async(unclosed_writer_until_told)
        local = DBOS.read_stream_async(handle.workflow_id, "s")
        remote = await next_values(reader, handle.workflow_id, "s", 0)
        assert remote == (["first"], False)
        async with asyncio.timeout(10):
            assert await anext(local) == "first"
            waiting_here = asyncio.ensure_future(anext(local))
            waiting_there = asyncio.ensure_future(next_values(reader, handle.workflow_id, "s", 1))
            await until_asked_to_be_told(reader, handle.workflow_id)
            await DBOS.send_async(handle.workflow_id, None, "end")
            await handle.get_result()
            with pytest.raises(StopAsyncIteration):
                await waiting_here
            assert await waiting_there == ([], True)


async def test_reading_an_unknown_workflows_stream_raises(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await _read_all("no-such-workflow")


@DBOS.workflow()
def sync_streamer() -> None:
    DBOS.write_stream("s", 1)
    DBOS.write_stream("s", 2)
    DBOS.close_stream("s")


@DBOS.workflow()
def sync_stream_reader(source: str) -> list[Any]:
    return list(DBOS.read_stream(source, "s"))


def test_stream_sync_forms(dbos_sync: type[DBOS]) -> None:
    handle = DBOS.start_workflow(sync_streamer)
    assert list(DBOS.read_stream(handle.workflow_id, "s")) == [1, 2]
    first = DBOS.read_stream(handle.workflow_id, "s")
    assert next(first) == 1
    first.close()  # a reader may stop early
    # A sync workflow's read is checkpointed value by value, as an async one's is.
    reader = DBOS.start_workflow(sync_stream_reader, handle.workflow_id)
    assert reader.get_result() == [1, 2]
    steps = DBOS.list_workflow_steps(reader.workflow_id)
    reads = [s["output"] for s in steps if s["function_name"] == "DBOS.readStream"]
    assert reads == [[True, 1], [True, 2], [False]]


@DBOS.workflow()
async def waits_for(topic: str) -> str:
    await DBOS.recv_async(topic, timeout_seconds=10)
    return topic


async def test_wait_first_returns_the_first_to_finish(dbos: type[DBOS]) -> None:
    slow = await DBOS.start_workflow_async(waits_for, "slow")
    fast = await DBOS.start_workflow_async(waits_for, "fast")
    await DBOS.send_async(fast.workflow_id, None, "fast")
    first = await DBOS.wait_first_async([slow, fast])
    assert first.workflow_id == fast.workflow_id
    await DBOS.send_async(slow.workflow_id, None, "slow")
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.wait_first_async([])
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.wait_first_async([slow, slow])


@DBOS.workflow()
async def blocked_in(where: str) -> None:
    await mark(f"in-{where}")
    if where == "recv":
        await DBOS.recv_async("never", timeout_seconds=600)
    elif where == "sleep":
        await DBOS.sleep_async(600)
    else:
        await long_step()
    await mark("after")


@DBOS.step()
async def long_step() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize("where", ["recv", "sleep", "step"])
async def test_cancel_stops_a_blocked_workflow_at_once(
    dbos: type[DBOS], database_url: str, where: str
) -> None:
    handle = await DBOS.start_workflow_async(blocked_in, where)
    await waypoints.reached(f"in-{where}")
    await DBOS.cancel_workflow_async(handle.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), 5)
    status = await handle.get_status()
    assert status is not None and status.status == "CANCELLED"
    assert "after" not in ran
    # A cancelled workflow is not recovered.
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    assert DBOS._runtime is not None and handle.workflow_id not in DBOS._runtime.active


async def test_cancel_unknown_workflow_raises(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.cancel_workflow_async("nobody")


@DBOS.workflow()
def sync_blocked() -> None:
    DBOS.recv("go", timeout_seconds=600)
    ran.append("sync-after-recv")
    sync_step_after()


@DBOS.step()
def sync_step_after() -> None:
    ran.append("sync-step-ran")


def test_cancel_a_sync_workflow(dbos_sync: type[DBOS]) -> None:
    handle = DBOS.start_workflow(sync_blocked)
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert _status(handle.workflow_id) == "CANCELLED"
    assert "sync-step-ran" not in ran


def _status(workflow_id: str) -> str | None:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else None


@DBOS.workflow()
async def parent_with_timeout() -> None:
    await DBOS.start_workflow_async(blocked_in, "recv")
    await DBOS.recv_async("never", timeout_seconds=600)


async def test_timeout_cancels_the_workflow_and_children_inherit_the_deadline(
    dbos: type[DBOS],
) -> None:
    with SetWorkflowTimeout(0.3), SetWorkflowID("timed-parent"):
        handle = await DBOS.start_workflow_async(parent_with_timeout)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), 10)
    parent = await handle.get_status()
    child = await DBOS.get_workflow_status_async("timed-parent-1")
    assert parent is not None and child is not None
    assert child.workflow_deadline_epoch_ms == parent.workflow_deadline_epoch_ms
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(DBOS.get_result_async("timed-parent-1"), 10)


@DBOS.workflow()
async def outlives_a_crash() -> None:
    await mark("timed-running")
    await DBOS.recv_async("never", timeout_seconds=10 * 86_400)


async def test_recovered_workflow_keeps_its_deadline(
    dbos: type[DBOS], database_url: str, dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    with SetWorkflowTimeout(3600), SetWorkflowID("timed-recovered"):
        await DBOS.start_workflow_async(outlives_a_crash)
    await waypoints.reached("timed-running")
    status = await DBOS.get_workflow_status_async("timed-recovered")
    assert status is not None and status.workflow_deadline_epoch_ms is not None
    deadline = status.workflow_deadline_epoch_ms
    await DBOS.destroy_async()
    dbos_clock.advance(timedelta(minutes=30))  # half the hour passes while the process is down
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    await dbos_clock.wait_for_pending(2)  # recovered: its deadline, and its recv again
    dbos_clock.advance(timedelta(minutes=29))
    after = await DBOS.get_workflow_status_async("timed-recovered")
    assert after is not None and after.status == "PENDING"
    dbos_clock.advance(timedelta(minutes=1))  # the original hour is up (not an hour from now)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(DBOS.get_result_async("timed-recovered"), 10)
    after = await DBOS.get_workflow_status_async("timed-recovered")
    assert after is not None and after.workflow_deadline_epoch_ms == deadline


@DBOS.workflow()
async def stream_reader(source: str) -> list[Any]:
    seen = [value async for value in DBOS.read_stream_async(source, "s")]
    await mark("read-all")
    await DBOS.recv_async("finish-reader", timeout_seconds=30)
    return seen


async def test_stream_reads_inside_a_workflow_are_checkpointed_and_replayed(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("stream-src"):
        source = await DBOS.start_workflow_async(unclosed_writer)
    await source.get_result()
    with SetWorkflowID("stream-reader"):
        await DBOS.start_workflow_async(stream_reader, "stream-src")
    await waypoints.reached("read-all")
    steps = await DBOS.list_workflow_steps_async("stream-reader")
    reads = [s for s in steps if s["function_name"] == "DBOS.readStream"]
    assert [r["output"] for r in reads] == [[True, "only"], [False]]
    # A replay after a crash returns the recorded values, even if the stream changed since.
    runtime = DBOS._runtime
    assert runtime is not None
    await runtime.db.execute("DELETE FROM streams WHERE workflow_uuid = 'stream-src'")
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    await DBOS.send_async("stream-reader", None, "finish-reader")
    assert await DBOS.get_result_async("stream-reader") == ["only"]
