"""``Debouncer`` and ``DebouncerClient`` on real Postgres: a burst of concurrent calls runs the
workflow once with the last inputs, the timeout caps the wait, a call after the start begins a
new workflow, a debounce inside a workflow replays to the same workflow, a client debounces,
and bad input is refused with nothing written.

Where a test needs the burst to end before the period does, the period is long and the test
then moves the start to now (``set_workflow_delay``), or freezes the engine's clock and moves
it past the period: no test depends on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSInvalidArgumentError,
    DBOSQueueDeduplicatedError,
    DBOSSerializationError,
    DBOSWorkflowFunctionNotFoundError,
    Debouncer,
    DebouncerClient,
    EnqueueOptions,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
)
from dbos_async.error import DBOSQueueNotFoundError
from dbos_async.testing import Clock
from tests.waypoints import Waypoints

waypoints = Waypoints()
queue = Queue("debounce_queue")
WAIT = 20.0  # seconds: the bound on every wait for a workflow
LONG = 60.0  # seconds: a period no test waits out
runs: list[tuple[str, Any]] = []
replayed_ids: list[str] = []


@pytest.fixture(autouse=True)
def _module_state() -> Iterator[None]:
    waypoints.clear()
    runs.clear()
    replayed_ids.clear()
    yield


@DBOS.workflow()
async def db_record(value: Any) -> Any:
    workflow_id = DBOS.workflow_id
    assert workflow_id is not None
    runs.append((workflow_id, value))
    waypoints.passed("ran")
    return value


@DBOS.workflow()
async def db_gated(value: Any) -> Any:
    waypoints.passed("gated-started")
    await waypoints.gate("go").wait()
    return value


record = Debouncer.create_async(db_record)
gated = Debouncer.create_async(db_gated, queue=queue)


@DBOS.workflow()
async def db_parent(value: int) -> str:
    handle = await record.debounce_async("in-workflow", LONG, value)
    replayed_ids.append(handle.workflow_id)
    waypoints.passed("parent-bounced")
    await waypoints.gate("parent-go").wait()
    return handle.workflow_id


@DBOS.workflow()
def db_sync_record(value: int) -> int:
    return value


def db_plain(value: int) -> int:
    return value


async def _row(database_url: str, workflow_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT * FROM dbos.workflow_status WHERE workflow_uuid = $1", workflow_id
        )
    finally:
        await conn.close()
    assert row is not None
    return row


async def _count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM dbos.workflow_status")
    finally:
        await conn.close()
    return count


async def _stored_input(dbos: type[DBOS], workflow_id: str) -> Any:
    [status] = await dbos.list_workflows_async(workflow_ids=[workflow_id], load_input=True)
    assert status.input is not None
    return status.input["args"][0]


async def test_a_burst_of_50_concurrent_calls_runs_once_with_the_last_input(
    dbos: type[DBOS], database_url: str, dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    handles = await asyncio.gather(*(record.debounce_async("burst", LONG, i) for i in range(50)))
    [workflow_id] = {handle.workflow_id for handle in handles}
    row = await _row(database_url, workflow_id)
    assert row["status"] == "DELAYED" and row["is_debounced"]
    # The last bounce to commit left its input in the row; that is what runs.
    last = await _stored_input(dbos, workflow_id)
    assert last in range(50)
    await dbos.set_workflow_delay_async(workflow_id, delay_seconds=0)
    assert await asyncio.wait_for(handles[0].get_result(), WAIT) == last
    assert runs == [(workflow_id, last)]
    assert len(await dbos.list_workflows_async(name=record.func_name)) == 1
    # A later call after the burst finds the key free and starts a new workflow.
    again = await record.debounce_async("burst", LONG, "after")
    assert again.workflow_id != workflow_id
    assert (await _row(database_url, again.workflow_id))["status"] == "DELAYED"
    dbos_clock.advance(LONG)
    assert await asyncio.wait_for(again.get_result(), WAIT) == "after"


async def test_a_sequential_last_call_wins(dbos: type[DBOS]) -> None:
    first = await record.debounce_async("seq", LONG, "first")
    await asyncio.gather(*(record.debounce_async("seq", LONG, i) for i in range(10)))
    last = await record.debounce_async("seq", LONG, "last")
    assert last.workflow_id == first.workflow_id
    await dbos.set_workflow_delay_async(first.workflow_id, delay_seconds=0)
    assert await asyncio.wait_for(first.get_result(), WAIT) == "last"
    assert [value for _, value in runs] == ["last"]


async def test_the_timeout_caps_the_wait_from_the_first_call(
    dbos: type[DBOS], database_url: str, dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    cap = 30  # seconds, half the period
    capped = Debouncer.create_async(db_record, debounce_timeout_sec=cap)
    first = await capped.debounce_async("cap", LONG, 1)
    row = await _row(database_url, first.workflow_id)
    deadline = row["debounce_deadline_epoch_ms"]
    assert deadline == dbos_clock.now_ms() + cap * 1000
    assert row["delay_until_epoch_ms"] == deadline
    dbos_clock.advance(cap / 3)
    second = await capped.debounce_async("cap", LONG, 2)
    assert second.workflow_id == first.workflow_id
    row = await _row(database_url, first.workflow_id)
    assert row["delay_until_epoch_ms"] == deadline  # the long period did not move it
    # It runs at the deadline, not after the period (the clock never gets there).
    dbos_clock.advance(cap - cap / 3)
    assert await asyncio.wait_for(first.get_result(), WAIT) == 2
    status = await first.get_status()
    assert status is not None and status.dequeued_at == deadline


async def test_a_call_after_the_workflow_started_begins_a_new_one(
    dbos: type[DBOS], database_url: str, dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    first = await gated.debounce_async("start", LONG, "one")
    dbos_clock.advance(LONG)
    await waypoints.reached("gated-started")
    second = await gated.debounce_async("start", LONG, "two")
    assert second.workflow_id != first.workflow_id
    assert (await _row(database_url, second.workflow_id))["status"] == "DELAYED"
    waypoints.gate("go").set()
    assert await asyncio.wait_for(first.get_result(), WAIT) == "one"
    dbos_clock.advance(LONG)
    assert await asyncio.wait_for(second.get_result(), WAIT) == "two"
    statuses = await dbos.list_workflows_async(name=gated.func_name)
    assert {status.queue_name for status in statuses} == {queue.name}


async def test_debounce_inside_a_workflow_is_a_step_and_replays_to_the_same_workflow(
    dbos: type[DBOS],
) -> None:
    with SetWorkflowID("debounce-parent"):
        parent = await dbos.start_workflow_async(db_parent, 7)
    await waypoints.reached("parent-bounced")
    steps = await dbos.list_workflow_steps_async(parent.workflow_id)
    assert [(s["function_name"], s["child_workflow_id"]) for s in steps] == [
        ("DBOS.debounce", replayed_ids[0])
    ]
    # Run the parent again from its recorded steps: the debounce replays, bouncing nothing.
    await dbos.cancel_workflow_async(parent.workflow_id)
    await dbos.resume_workflow_async(parent.workflow_id)
    await waypoints.reached("parent-bounced")
    waypoints.gate("parent-go").set()
    assert await asyncio.wait_for(parent.get_result(), WAIT) == replayed_ids[0]
    assert replayed_ids[0] == replayed_ids[1]
    [child] = await dbos.list_workflows_async(name=record.func_name, load_input=True)
    assert child.workflow_id == replayed_ids[0] and child.status == "DELAYED"
    assert child.input is not None and child.input["args"] == (7,)


async def test_a_client_debounces_a_workflow_the_engine_runs(
    dbos: type[DBOS], database_url: str, dbos_clock: Clock
) -> None:
    options: EnqueueOptions = {"workflow_name": record.func_name, "queue_name": "unused"}
    async with DBOSClient(database_url, application_name="test-app") as client:
        debouncer = DebouncerClient(client, options, queue=queue)
        handles = await asyncio.gather(
            *(debouncer.debounce_async("client", LONG, i) for i in range(20))
        )
        [workflow_id] = {handle.workflow_id for handle in handles}
        # The sync form, from a thread, reaches the same workflow and sets the last input.
        sync_handle = await asyncio.to_thread(debouncer.debounce, "client", LONG, "sync")
        assert sync_handle.workflow_id == workflow_id
        await client.set_workflow_delay_async(workflow_id, delay_seconds=0)
        assert await asyncio.wait_for(handles[0].get_result(), WAIT) == "sync"
        assert runs == [(workflow_id, "sync")]
        status = await handles[0].get_status()
        assert status is not None and status.queue_name == queue.name
        # A bounce that moves the start earlier wakes the engine's dispatcher (a NOTIFY from
        # the client's process): without it the engine would wait for the first start.
        runs.clear()
        dbos_clock.freeze()
        late = await debouncer.debounce_async("earlier", LONG, "late")
        early = await debouncer.debounce_async("earlier", 1, "early")
        assert early.workflow_id == late.workflow_id
        status = await early.get_status()
        assert status is not None and status.status == "DELAYED"
        assert status.delay_until_epoch_ms is not None
        # Move the engine's clock to the earlier start (far before the first one's).
        dbos_clock.advance(max(0.0, status.delay_until_epoch_ms - dbos_clock.now_ms() + 0.5) / 1000)
        assert await asyncio.wait_for(early.get_result(), WAIT) == "early"


def test_sync_debounce_from_sync_code(dbos_sync: type[DBOS]) -> None:
    debouncer = Debouncer.create(db_sync_record)
    handle = debouncer.debounce("sync", LONG, 41)
    assert debouncer.debounce("sync", LONG, 42).workflow_id == handle.workflow_id
    dbos_sync.set_workflow_delay(handle.workflow_id, delay_seconds=0)
    assert handle.get_result() == 42


async def test_bad_input_is_refused_and_nothing_is_written(
    dbos: type[DBOS], database_url: str
) -> None:
    for period in (-1, "1", True, float("nan"), None):
        with pytest.raises(DBOSInvalidArgumentError):
            await record.debounce_async("k", period, 1)  # type: ignore[arg-type]
    for key in ("", 5, None):
        with pytest.raises(DBOSInvalidArgumentError):
            await record.debounce_async(key, 1, 1)  # type: ignore[arg-type]
    for timeout in (0, -1, "2"):
        with pytest.raises(DBOSInvalidArgumentError):
            Debouncer.create(db_record, debounce_timeout_sec=timeout)  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError):
        Debouncer.create(db_plain)  # not a workflow
    with pytest.raises(DBOSWorkflowFunctionNotFoundError):
        await Debouncer("no-such-workflow").debounce_async("k", 1)
    with pytest.raises(DBOSQueueNotFoundError):
        await Debouncer.create(db_record, queue="no-such-queue").debounce_async("k", 1, 1)
    for options in (
        {"deduplication_id": "d"},
        {"delay_seconds": 1.0},
        {"priority": 1},
        {"deduplication_id": "d", "duplication_policy": "return-existing"},
    ):
        with SetEnqueueOptions(**options), pytest.raises(DBOSInvalidArgumentError):
            await record.debounce_async("k", 1, 1)
    with (
        SetWorkflowID("pinned", workflow_id_reuse_policy="reject"),
        pytest.raises(DBOSInvalidArgumentError),
    ):
        await record.debounce_async("k", 1, 1)
    with pytest.raises(DBOSSerializationError):  # a value that cannot be recorded
        await record.debounce_async("k", 1, object())
    async with DBOSClient(database_url, application_name="test-app") as client:
        base: EnqueueOptions = {"workflow_name": record.func_name, "queue_name": queue.name}
        for extra in ({"priority": 1}, {"queue_partition_key": "p"}, {"delay_seconds": 1}):
            bad = DebouncerClient(client, {**base, **extra})  # type: ignore[typeddict-item]
            with pytest.raises(DBOSInvalidArgumentError):
                await bad.debounce_async("k", 1, 1)
        unknown = DebouncerClient(client, {**base, "workflow_name": "no-such-workflow"})
        with pytest.raises(DBOSWorkflowFunctionNotFoundError):
            await unknown.debounce_async("k", 1, 1)
        with pytest.raises(DBOSInvalidArgumentError):
            await DebouncerClient(client, base).debounce_async("k", -1, 1)
    assert await _count(database_url) == 0


async def test_a_key_held_by_an_ordinary_enqueue_is_a_deduplication_error(
    dbos: type[DBOS], database_url: str
) -> None:
    debouncer = Debouncer.create_async(db_gated, queue=queue)
    assert await Debouncer.create_async(db_gated, queue=queue) is not None  # awaitable too
    with SetEnqueueOptions(deduplication_id=f"{debouncer.func_name}-held"):
        held = await queue.enqueue_async(db_gated, "held")
    with pytest.raises(DBOSQueueDeduplicatedError) as caught:
        await debouncer.debounce_async("held", 1, "bounce")
    assert caught.value.workflow_id == held.workflow_id
    waypoints.gate("go").set()
    assert await asyncio.wait_for(held.get_result(), WAIT) == "held"
    assert await _count(database_url) == 1
