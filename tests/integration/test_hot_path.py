"""What the lean per-workflow path must keep: callers' cancellation, write patience, IDs, context.

Starting, running and awaiting a workflow of plain steps takes shortcuts (no ``asyncio.shield``,
one expiry timer per writer, no step span when tracing is off, no forwarding on the engine's
loop); these tests pin the behaviour users rely on through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence

import pytest

from dbos_async import (
    DBOS,
    DBOSContextSetAuth,
    DBOSDatabaseUnavailableError,
    SetWorkflowID,
    StepStatus,
)
from dbos_async._features._workflow import new_workflow_id
from dbos_async._sysdb._group_commit import GroupCommit
from dbos_async._sysdb._retry import retry_until_available
from tests.waypoints import Waypoints

calls: Counter[str] = Counter()
waypoints = Waypoints()


@pytest.fixture(autouse=True)
def _reset_state() -> None:
    calls.clear()
    waypoints.clear()


@DBOS.step()
async def hp_add(x: int, y: int) -> int:
    calls["add"] += 1
    return x + y


@DBOS.step()
async def hp_fail(message: str) -> None:
    calls["fail"] += 1
    raise ValueError(message)


@DBOS.step()
async def hp_gate(name: str) -> str:
    waypoints.passed(name)
    await waypoints.gate(name).wait()
    return name


@DBOS.workflow()
async def hp_gated(x: int) -> int:
    await hp_gate("gated")
    return await hp_add(x, 1)


@DBOS.workflow()
async def hp_gated_failure() -> None:
    await hp_gate("failing")
    await hp_fail("boom")


@DBOS.workflow()
async def hp_three(x: int) -> int:
    total = 0
    for i in range(3):
        total += await hp_add(x, i)
    return total


# Cancelling a caller never cancels the workflow it awaits -------------------------------------


async def test_cancelling_the_caller_leaves_the_workflow_running(dbos: type[DBOS]) -> None:
    with SetWorkflowID("hp-detach"):
        caller = asyncio.ensure_future(hp_gated(41))
    await waypoints.reached("gated")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    waypoints.gate("gated").set()
    handle = await DBOS.retrieve_workflow_async("hp-detach")
    assert await asyncio.wait_for(handle.get_result(), 10) == 42
    status = await handle.get_status()
    assert status is not None and status.status == "SUCCESS"


async def test_timed_out_waits_on_a_handle_leave_the_workflow_running(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(hp_gated, 1)
    await waypoints.reached("gated")
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(handle.get_result(), 0.01)
    waypoints.gate("gated").set()
    assert await asyncio.wait_for(handle.get_result(), 10) == 2


async def test_callers_waiting_on_a_running_workflow_get_its_error(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(hp_gated_failure)
    await waypoints.reached("failing")
    waiters = [asyncio.ensure_future(handle.get_result()) for _ in range(2)]
    await asyncio.sleep(0)
    waypoints.gate("failing").set()
    for waiter in waiters:
        with pytest.raises(ValueError, match="boom"):
            await asyncio.wait_for(waiter, 10)
    status = await handle.get_status()
    assert status is not None and status.status == "ERROR"


# Workflow IDs ----------------------------------------------------------------------------------


def _assert_uuid7(text: str) -> None:
    parsed = uuid.UUID(text)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert str(parsed) == text


# The 74 random bits of a version 7 UUID: 12 after the version, 62 after the variant.
_RANDOM_BITS = (0xFFF << 64) | ((1 << 62) - 1)


def test_generated_workflow_ids_are_time_ordered_uuid7_strings() -> None:
    """IDs made later sort later (a new workflow's rows go to the newest pages of the keys),
    carry the wall clock's milliseconds, and are otherwise random."""
    before_ms = time.time_ns() // 1_000_000
    ids = [new_workflow_id() for _ in range(20_000)]
    after_ms = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for workflow_id in ids:
        _assert_uuid7(workflow_id)
    stamps = [uuid.UUID(workflow_id).int >> 80 for workflow_id in ids]
    assert stamps == sorted(stamps)
    assert before_ms <= stamps[0] and stamps[-1] <= after_ms
    # Each ID's text sorts as its milliseconds do.
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)
    as_ints = [uuid.UUID(workflow_id).int for workflow_id in ids[:2000]]
    varying = 0
    for value in as_ints[1:]:
        varying |= value ^ as_ints[0]
    assert varying & _RANDOM_BITS == _RANDOM_BITS


async def test_workflows_started_without_an_id_get_uuid7_ids(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(hp_three, 1)
    assert await handle.get_result() == 6
    _assert_uuid7(handle.workflow_id)
    workflows = await DBOS.list_workflows_async()
    assert [w.workflow_id for w in workflows] == [handle.workflow_id]


# Steps --------------------------------------------------------------------------------------------


async def test_a_plain_step_sees_its_status_and_leaves_no_trace_after(dbos: type[DBOS]) -> None:
    seen: dict[str, object] = {}

    @DBOS.step()
    async def hp_look() -> None:
        seen["step_id"] = DBOS.step_id
        seen["status"] = DBOS.step_status

    @DBOS.workflow()
    async def hp_looking() -> int:
        await hp_look()
        with contextlib.suppress(ValueError):
            await hp_fail("caught")
        seen["after"] = DBOS.step_id
        return await hp_add(1, 2)  # still checkpointed: the failed step's context was left

    with SetWorkflowID("hp-look"):
        assert await hp_looking() == 3
    status = seen["status"]
    assert seen["step_id"] == 1 and seen["after"] is None
    assert isinstance(status, StepStatus)
    assert (status.step_id, status.current_attempt, status.max_attempts) == (1, None, None)
    steps = await DBOS.list_workflow_steps_async("hp-look")
    assert [(s["function_id"], s["function_name"]) for s in steps] == [
        (1, hp_look.__qualname__),
        (2, hp_fail.__qualname__),
        (3, hp_add.__qualname__),
    ]
    assert steps[1]["error"] is not None
    # Replayed from its records: no step runs again, the caught error included.
    calls.clear()
    with SetWorkflowID("hp-look"):
        assert await hp_looking() == 3
    assert calls == Counter()


def test_async_workflows_and_steps_from_another_event_loop(dbos_sync: type[DBOS]) -> None:
    """The engine runs on its own loop thread; a caller on another loop is forwarded to it."""

    async def elsewhere() -> tuple[int, int]:
        with SetWorkflowID("hp-elsewhere"):
            result = await hp_three(10)
        return result, await hp_add(2, 3)  # outside a workflow: a plain call, on this loop

    assert asyncio.run(elsewhere()) == (33, 5)
    assert calls["add"] == 4
    steps = DBOS.list_workflow_steps("hp-elsewhere")
    assert [s["output"] for s in steps] == [10, 11, 12]
    assert asyncio.run(elsewhere()) == (33, 5)  # the workflow replays; the plain call runs
    assert calls["add"] == 5


async def test_auth_and_ids_set_by_the_caller_reach_only_the_workflow_started(
    dbos: type[DBOS],
) -> None:
    seen: list[tuple[str, str | None, str | None]] = []

    @DBOS.workflow()
    async def hp_child() -> None:
        seen.append(("child", DBOS.workflow_id, DBOS.authenticated_user))

    @DBOS.workflow()
    async def hp_parent() -> None:
        seen.append(("parent", DBOS.workflow_id, DBOS.authenticated_user))
        await hp_child()

    with DBOSContextSetAuth("ann", ["admin"]), SetWorkflowID("hp-parent"):
        await hp_parent()
    assert seen == [("parent", "hp-parent", "ann"), ("child", "hp-parent-1", "ann")]
    seen.clear()
    await hp_parent()  # outside the block: another ID, no authentication
    assert [(kind, user) for kind, _, user in seen] == [("parent", None), ("child", None)]
    assert seen[0][1] != "hp-parent"
    workflows = {w.workflow_id: w for w in await DBOS.list_workflows_async()}
    assert workflows["hp-parent"].authenticated_user == "ann"
    assert workflows["hp-parent-1"].authenticated_user == "ann"


# Group commit: each caller's patience ----------------------------------------------------------


class _Stalled:
    """A flush that holds every batch until released, recording what it wrote."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.batches: list[list[int]] = []

    async def flush(self, rows: Sequence[int]) -> list[int]:
        await self.release.wait()
        self.batches.append(list(rows))
        return [row * 10 for row in rows]


class _RoundTrips(_Stalled):
    """As :class:`_Stalled`, and a released flush still waits for its reply (one turn of the
    loop), as a statement does."""

    async def flush(self, rows: Sequence[int]) -> list[int]:
        await self.release.wait()
        await asyncio.sleep(0)
        self.batches.append(list(rows))
        return [row * 10 for row in rows]


async def test_a_queued_write_gives_up_after_its_patience() -> None:
    stalled = _Stalled()
    writer: GroupCommit[int, int] = GroupCommit(stalled.flush, max_in_flight=1, patience=0.2)
    first = asyncio.ensure_future(writer.submit(1))  # written at once, in its own task
    await asyncio.sleep(0)
    started = time.monotonic()
    queued = asyncio.ensure_future(writer.submit(2))
    await asyncio.sleep(0.1)
    later = asyncio.ensure_future(writer.submit(3))
    with pytest.raises(DBOSDatabaseUnavailableError) as caught:
        await queued
    assert 0.15 < time.monotonic() - started < 5
    assert "the write did not commit" in str(caught.value)
    assert not later.done()  # its own patience is not over yet
    with pytest.raises(DBOSDatabaseUnavailableError):
        await later
    assert time.monotonic() - started >= 0.25
    stalled.release.set()
    assert await first == 10
    await asyncio.sleep(0.05)  # the batch of the expired callers is written all the same
    assert stalled.batches == [[1], [2, 3]]
    assert await writer.submit(4) == 40  # the writer goes on


async def test_patience_covers_only_callers_that_have_a_limit() -> None:
    stalled = _Stalled()
    writer: GroupCommit[int, int] = GroupCommit(stalled.flush, max_in_flight=1, patience=0.05)

    async def workflow_like(row: int) -> int:
        retry_until_available()  # a workflow waits for the database however long it is away
        return await writer.submit(row)

    first = asyncio.ensure_future(writer.submit(1))
    await asyncio.sleep(0)
    patient = asyncio.ensure_future(workflow_like(2))
    impatient = asyncio.ensure_future(writer.submit(3))
    cancelled = asyncio.ensure_future(writer.submit(4))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(DBOSDatabaseUnavailableError):
        await impatient
    await asyncio.sleep(0.1)
    assert not patient.done()
    stalled.release.set()
    assert (await first, await patient) == (10, 20)
    assert cancelled.cancelled()


async def test_a_write_dropped_before_it_starts_does_not_hold_the_writer() -> None:
    stalled = _Stalled()
    stalled.release.set()
    writer: GroupCommit[int, int] = GroupCommit(stalled.flush, max_in_flight=1)
    dropped = asyncio.ensure_future(writer.submit(1))  # e.g. a deferred checkpoint's task
    dropped.cancel()  # cancelled before its first step: the write never runs
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert await asyncio.wait_for(writer.submit(2), 5) == 20
    both = await asyncio.wait_for(asyncio.gather(writer.submit(3), writer.submit(4)), 5)
    assert list(both) == [30, 40]
    assert stalled.batches[0] == [2]


async def test_a_write_awaited_after_its_writer_closed_is_refused() -> None:
    stalled = _Stalled()
    stalled.release.set()
    writer: GroupCommit[int, int] = GroupCommit(stalled.flush)
    late = writer.submit(1)  # not awaited yet
    writer.close()
    with pytest.raises(DBOSDatabaseUnavailableError, match="closing"):
        await asyncio.wait_for(late, 5)
    assert stalled.batches == []


async def test_callers_resuming_together_write_their_next_rows_together() -> None:
    """A batch's callers resume in one turn of the loop and submit their next rows: the first
    finds the writer idle and writes alone, the others go out together, not one more alone in
    the second flush slot (which left one of the two flushes carrying a single row)."""
    stalled = _RoundTrips()
    writer: GroupCommit[int, int] = GroupCommit(stalled.flush, max_in_flight=2)

    async def two_writes(row: int) -> int:
        await writer.submit(row)
        return await writer.submit(row + 10)

    first = asyncio.ensure_future(writer.submit(0))  # the writer is idle: written alone
    await asyncio.sleep(0)
    callers = [asyncio.ensure_future(two_writes(row)) for row in range(1, 6)]
    await asyncio.sleep(0)
    stalled.release.set()
    assert await first == 0
    assert await asyncio.wait_for(asyncio.gather(*callers), 5) == [110, 120, 130, 140, 150]
    assert stalled.batches == [[0], [1, 2, 3, 4, 5], [11], [12, 13, 14, 15]]


async def test_closing_a_writer_fails_a_batch_whose_flush_has_not_started() -> None:
    stalled = _Stalled()
    writer: GroupCommit[int, int] = GroupCommit(stalled.flush, max_in_flight=1)
    first = asyncio.ensure_future(writer.submit(1))  # written alone: the one flush in flight
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(writer.submit(2))  # its flush starts when the first ends
    await asyncio.sleep(0)

    async def close_when_released() -> None:  # woken in the same turn as the first flush
        await stalled.release.wait()
        writer.close()

    closing = asyncio.ensure_future(close_when_released())
    await asyncio.sleep(0)
    stalled.release.set()
    assert await first == 10
    await closing
    with pytest.raises(DBOSDatabaseUnavailableError, match="closing"):
        await asyncio.wait_for(queued, 5)


async def test_closing_a_writer_fails_its_queued_callers_at_once() -> None:
    stalled = _Stalled()
    writer: GroupCommit[int, int] = GroupCommit(stalled.flush, max_in_flight=1, patience=60)
    first = asyncio.ensure_future(writer.submit(1))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(writer.submit(2))
    await asyncio.sleep(0)
    writer.close()
    with pytest.raises(DBOSDatabaseUnavailableError, match="closing"):
        await queued
    stalled.release.set()
    assert await first == 10
