"""Messages, events and durable sleep, in one process against real Postgres."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotInWorkflowError,
    DBOSSerializationError,
    SetWorkflowID,
)
from dbos_async.testing import Clock
from tests.conftest import make_config
from tests.waypoints import Waypoints

waypoints = Waypoints()


@pytest.fixture(autouse=True)
def _reset() -> None:
    waypoints.clear()


@DBOS.step()
async def mark(name: str) -> None:
    waypoints.passed(name)


@DBOS.workflow()
async def receive(topic: str | None, count: int, wait: float = 10) -> list[Any]:
    await mark("receiving")
    return [await DBOS.recv_async(topic, timeout_seconds=wait) for _ in range(count)]


@DBOS.workflow()
async def receive_each(topic: str | None, count: int, wait: float) -> list[Any]:
    """Like ``receive``, passing ``recv-<i>`` before its i-th ``recv``."""
    got = []
    for i in range(count):
        await mark(f"recv-{i}")
        got.append(await DBOS.recv_async(topic, timeout_seconds=wait))
    return got


async def let_recv_time_out(clock: Clock, i: int, wait: float) -> None:
    """Once ``receive_each`` waits in its i-th ``recv``, move the clock to its timeout."""
    await waypoints.reached(f"recv-{i}")
    await clock.wait_for_pending(1)  # the earlier recv's timer is gone: this one's
    clock.advance(wait)


async def test_messages_arrive_first_in_first_out(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(receive, "orders", 5)
    for i in range(5):
        await DBOS.send_async(handle.workflow_id, {"n": i}, "orders")
    assert await handle.get_result() == [{"n": i} for i in range(5)]


async def test_topics_are_kept_apart_and_none_is_a_topic(dbos: type[DBOS]) -> None:
    a = await DBOS.start_workflow_async(receive, "a", 1)
    plain = await DBOS.start_workflow_async(receive, None, 1)
    await DBOS.send_async(a.workflow_id, "for plain", None)
    await DBOS.send_async(plain.workflow_id, "for plain", None)
    await DBOS.send_async(a.workflow_id, "for a", "a")
    assert await a.get_result() == ["for a"]
    assert await plain.get_result() == ["for plain"]


async def test_recv_times_out_with_none(dbos: type[DBOS], dbos_clock: Clock) -> None:
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(receive_each, "silent", 2, 60)
    for i in range(2):
        await let_recv_time_out(dbos_clock, i, 60)
    assert await asyncio.wait_for(handle.get_result(), 10) == [None, None]


async def test_message_sent_before_recv_is_waiting(dbos: type[DBOS]) -> None:
    with SetWorkflowID("early-bird"):
        handle = await DBOS.start_workflow_async(receive, "later", 1)
    await DBOS.send_async("early-bird", "already here", "later")
    assert await handle.get_result() == ["already here"]


async def test_idempotency_key_delivers_once(dbos: type[DBOS], dbos_clock: Clock) -> None:
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(receive_each, "t", 2, 60)
    for _ in range(3):
        await DBOS.send_async(handle.workflow_id, "once", "t", idempotency_key="key-1")
    # The second recv finds nothing for its whole timeout.
    await let_recv_time_out(dbos_clock, 1, 60)
    assert await asyncio.wait_for(handle.get_result(), 10) == ["once", None]


async def test_send_to_unknown_workflow_raises(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.send_async("nobody-home", "hello")


async def test_bad_input_is_rejected_before_any_write(
    dbos: type[DBOS], database_url: str, dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(receive_each, "t", 1, 60)
    with pytest.raises(DBOSSerializationError):
        await DBOS.send_async(handle.workflow_id, object())
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.send_async("", "x")
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.send_async(handle.workflow_id, "x", topic=5)  # type: ignore[arg-type]
    await let_recv_time_out(dbos_clock, 0, 60)
    assert await asyncio.wait_for(handle.get_result(), 10) == [None]  # nothing was sent
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM dbos.notifications") == 0
    finally:
        await conn.close()


async def test_workflow_only_apis_outside_a_workflow_raise(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNotInWorkflowError):
        await DBOS.recv_async()
    with pytest.raises(DBOSNotInWorkflowError):
        await DBOS.sleep_async(1)
    with pytest.raises(DBOSNotInWorkflowError):
        await DBOS.set_event_async("k", 1)
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.get_event_async("x", "k", timeout_seconds=-1)


@DBOS.workflow()
async def ping(partner: str, rounds: int) -> int:
    for i in range(rounds):
        await DBOS.send_async(partner, i, "ping")
        assert await DBOS.recv_async("pong", timeout_seconds=10) == i
    return rounds


@DBOS.workflow()
async def pong(partner: str, rounds: int) -> None:
    for _ in range(rounds):
        value = await DBOS.recv_async("ping", timeout_seconds=10)
        await DBOS.send_async(partner, value, "pong")


async def test_workflows_exchange_messages(dbos: type[DBOS]) -> None:
    with SetWorkflowID("pong-1"):
        ponger = await DBOS.start_workflow_async(pong, "ping-1", 20)
    await DBOS.send_async("pong-1", "ignored: topic None")
    with SetWorkflowID("ping-1"):
        assert await ping("pong-1", 20) == 20
    await ponger.get_result()


@DBOS.workflow()
async def wait_for_go(expected: str) -> Any:
    return await DBOS.recv_async("go", timeout_seconds=600)


async def test_ten_thousand_waiters_are_all_woken(dbos: type[DBOS]) -> None:
    """10,000 workflows blocked in recv cost no thread and no connection, and all wake."""
    runtime = DBOS._runtime
    assert runtime is not None
    threads_before = threading.active_count()
    connections_before = runtime.db.pool.get_size()
    ids = [f"waiter-{i}" for i in range(10_000)]
    sem = asyncio.Semaphore(100)

    async def start(workflow_id: str) -> None:
        async with sem:
            with SetWorkflowID(workflow_id):
                await DBOS.start_workflow_async(wait_for_go, workflow_id)

    await asyncio.gather(*(start(i) for i in ids))
    async with asyncio.timeout(10):  # a regression fails here, not hangs
        while runtime.notifier.waiter_count < len(ids):  # noqa: ASYNC110 (no event for "subscribed")
            await asyncio.sleep(0.01)
    assert threading.active_count() == threads_before
    assert runtime.db.pool.get_size() <= max(connections_before, runtime.config.pool_size)

    async def send(workflow_id: str) -> None:
        async with sem:
            await DBOS.send_async(workflow_id, workflow_id, "go")

    await asyncio.gather(*(send(i) for i in ids))
    results = await asyncio.gather(*(DBOS.get_result_async(i) for i in ids))
    assert results == ids


@DBOS.workflow()
async def set_events() -> None:
    await DBOS.set_event_async("stage", "one")
    await mark("first-set")
    await DBOS.recv_async("continue", timeout_seconds=10)
    await DBOS.set_event_async("stage", "two")
    await DBOS.set_event_async("other", {"x": 1})


async def test_events_last_value_wins_and_waiters_wake(dbos: type[DBOS]) -> None:
    with SetWorkflowID("events-1"):
        handle = await DBOS.start_workflow_async(set_events)
    waiter = asyncio.ensure_future(DBOS.get_event_async("events-1", "other", 10))
    await waypoints.reached("first-set")
    assert await DBOS.get_event_async("events-1", "stage", 0) == "one"
    await DBOS.send_async("events-1", None, "continue")
    assert await waiter == {"x": 1}
    await handle.get_result()
    assert await DBOS.get_event_async("events-1", "stage") == "two"
    assert await DBOS.get_all_events_async("events-1") == {"stage": "two", "other": {"x": 1}}


async def test_get_event_times_out_with_none(dbos: type[DBOS], dbos_clock: Clock) -> None:
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(receive_each, "t", 1, 60)
    await waypoints.reached("recv-0")
    event = asyncio.ensure_future(DBOS.get_event_async("no-such-event-owner", "k", 60))
    await dbos_clock.wait_for_pending(2)  # the recv's timeout, and get_event's
    dbos_clock.advance(60)
    assert await asyncio.wait_for(event, 10) is None
    assert await asyncio.wait_for(handle.get_result(), 10) == [None]


@DBOS.workflow()
async def sleepy(seconds: float) -> float:
    start = time.time()
    await DBOS.sleep_async(seconds)
    return time.time() - start


async def test_durable_sleep_sleeps(dbos: type[DBOS]) -> None:
    assert await sleepy(0.05) >= 0.05
    assert await sleepy(0) >= 0


@DBOS.workflow()
async def recv_then_wait(wait: float) -> Any:
    first = await DBOS.recv_async("m", timeout_seconds=wait)
    await mark("got-first")
    await DBOS.recv_async("hold", timeout_seconds=30)
    return first


async def test_recovered_recv_does_not_consume_a_second_message(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("recv-recover"):
        await DBOS.start_workflow_async(recv_then_wait, 30)
    await DBOS.send_async("recv-recover", "first", "m")
    await waypoints.reached("got-first")
    await DBOS.send_async("recv-recover", "second", "m")
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    await DBOS.send_async("recv-recover", None, "hold")
    assert await DBOS.get_result_async("recv-recover") == "first"
    runtime = DBOS._runtime
    assert runtime is not None
    unconsumed = await runtime.db.fetchval(
        "SELECT count(*) FROM notifications WHERE destination_uuid = 'recv-recover' "
        "AND topic = 'm' AND NOT consumed"
    )
    assert unconsumed == 1


@DBOS.workflow()
async def long_recv() -> Any:
    await mark("long-recv")
    return await DBOS.recv_async("never", timeout_seconds=3600)


async def test_recovered_recv_keeps_its_original_deadline(
    dbos: type[DBOS], database_url: str, dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    with SetWorkflowID("deadline-kept"):
        await DBOS.start_workflow_async(long_recv)
    await waypoints.reached("long-recv")
    # recv waits on the clock once it has recorded its durable timeout.
    await dbos_clock.wait_for_pending(1)
    await DBOS.destroy_async()
    assert dbos_clock.pending == 0
    # Most of the hour passes while the process is down.
    dbos_clock.advance(timedelta(minutes=59))
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    await dbos_clock.wait_for_pending(1)  # recovered, it waits again
    status = await DBOS.get_workflow_status_async("deadline-kept")
    assert status is not None and status.status == "PENDING"
    # Had the timeout restarted at recovery it would end an hour after it, not one minute.
    dbos_clock.advance(timedelta(minutes=1))
    assert await asyncio.wait_for(DBOS.get_result_async("deadline-kept"), 10) is None


@DBOS.workflow()
def sync_messaging() -> list[Any]:
    DBOS.set_event("sync", "ready")
    got = DBOS.recv("s", timeout_seconds=10)
    DBOS.sleep(0.01)
    return [got, DBOS.get_event(DBOS.workflow_id or "", "sync", 0)]


def test_sync_forms(dbos_sync: type[DBOS]) -> None:
    handle = DBOS.start_workflow(sync_messaging)
    assert DBOS.get_event(handle.workflow_id, "sync", 10) == "ready"
    DBOS.send(handle.workflow_id, "hi", "s")
    assert handle.get_result() == ["hi", "ready"]
    assert DBOS.get_all_events(handle.workflow_id) == {"sync": "ready"}


async def test_safety_sweep_finds_what_no_notification_announced(dbos: type[DBOS]) -> None:
    """A message written behind the engine's back (no NOTIFY at all) is found by the sweep."""
    runtime = DBOS._runtime
    assert runtime is not None
    with SetWorkflowID("unannounced"):
        handle = await DBOS.start_workflow_async(receive, "quiet", 1, 600)
    await waypoints.reached("receiving")
    # recv records its durable timeout only after a first read found nothing: from then on,
    # only a wake-up makes it read again.
    async with asyncio.timeout(10):  # a regression fails here, not hangs
        while not await runtime.db.fetchval(  # noqa: ASYNC110 (nothing to await for this)
            "SELECT count(*) FROM operation_outputs WHERE workflow_uuid = 'unannounced' "
            "AND function_name = 'DBOS.sleep'"
        ):
            await asyncio.sleep(0.01)
    await runtime.db.execute(
        "INSERT INTO notifications (destination_uuid, topic, message, serialization, "
        "created_at_epoch_ms) VALUES ('unannounced', 'quiet', $1, $2, 0)",
        runtime.codec.dumps("found"),
        runtime.codec.name,
    )
    await runtime.notifier.sweep()  # what the hub runs every safety_poll_seconds
    assert await asyncio.wait_for(handle.get_result(), 10) == ["found"]


async def test_message_sent_while_the_receiver_is_down_is_there_after_recovery(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("down-receiver"):
        await DBOS.start_workflow_async(receive, "mail", 1, 600)
    await waypoints.reached("receiving")
    await DBOS.destroy_async()  # the receiver's process is gone; its workflow stays PENDING
    DBOS(config=make_config(database_url, executor_id="another-process"))
    await DBOS.launch_async()  # another executor: it does not recover "local" workflows
    await DBOS.send_async("down-receiver", "sent while down", "mail")
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()  # the receiver's executor comes back and recovers it
    assert await asyncio.wait_for(DBOS.get_result_async("down-receiver"), 10) == ["sent while down"]
