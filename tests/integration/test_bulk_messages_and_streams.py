"""Messages and streams as DBOS 3.x has them: ``send_bulk``, ``send_to_forks``, reading a stream
from an offset, with a timeout, or one value at a time (``read_stream_offset``).

On real Postgres, in one process; writers that must be caught mid-stream wait at a Waypoints gate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSStreamTimeoutError,
    SendMessage,
    SetWorkflowID,
)
from tests.waypoints import Waypoints

waypoints = Waypoints()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    waypoints.clear()
    yield


@DBOS.workflow()
async def receiver(topic: str, count: int) -> list[Any]:
    return [await DBOS.recv_async(topic, timeout_seconds=20) for _ in range(count)]


@DBOS.workflow()
async def bulk_sender(destinations: list[str]) -> None:
    await DBOS.send_bulk_async([SendMessage(d, f"from-workflow-to-{d}", "t") for d in destinations])


async def _message_count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM dbos.notifications"))
    finally:
        await conn.close()


async def test_send_bulk_delivers_every_message_in_order(dbos: type[DBOS]) -> None:
    with SetWorkflowID("rx-a"):
        a = await DBOS.start_workflow_async(receiver, "t", 3)
    with SetWorkflowID("rx-b"):
        b = await DBOS.start_workflow_async(receiver, "u", 1)
    await DBOS.send_bulk_async(
        [
            SendMessage("rx-a", 1, "t"),
            SendMessage("rx-b", {"only": True}, "u"),
            SendMessage("rx-a", 2, "t"),
            SendMessage("rx-a", 3, "t"),
        ]
    )
    assert await a.get_result() == [1, 2, 3]
    assert await b.get_result() == [{"only": True}]


async def test_send_bulk_writes_nothing_when_a_destination_is_unknown(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("rx-known"):
        known = await DBOS.start_workflow_async(receiver, "t", 1)
    with pytest.raises(DBOSNonExistentWorkflowError) as caught:
        await DBOS.send_bulk_async(
            [SendMessage("rx-known", "lost?", "t"), SendMessage("rx-nobody", "x", "t")]
        )
    assert "rx-nobody" in str(caught.value)
    assert await _message_count(database_url) == 0
    await DBOS.send_async("rx-known", "after", "t")
    assert await known.get_result() == ["after"]


async def test_idempotency_keys_deliver_each_message_once(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("rx-idem"):
        handle = await DBOS.start_workflow_async(receiver, "t", 2)
    batch = [SendMessage("rx-idem", "one", "t", "k1"), SendMessage("rx-idem", "two", "t", "k2")]
    await DBOS.send_bulk_async(batch)
    await DBOS.send_bulk_async(batch)  # a retried bulk send delivers nothing twice
    await DBOS.send_async("rx-idem", "one again", "t", idempotency_key="k1")
    assert await handle.get_result() == ["one", "two"]
    assert await _message_count(database_url) == 2


async def test_send_bulk_inside_a_workflow_is_one_recorded_step(dbos: type[DBOS]) -> None:
    with SetWorkflowID("rx-w1"):
        first = await DBOS.start_workflow_async(receiver, "t", 1)
    with SetWorkflowID("rx-w2"):
        second = await DBOS.start_workflow_async(receiver, "t", 1)
    with SetWorkflowID("bulk-sender"):
        await (await DBOS.start_workflow_async(bulk_sender, ["rx-w1", "rx-w2"])).get_result()
    assert await first.get_result() == ["from-workflow-to-rx-w1"]
    assert await second.get_result() == ["from-workflow-to-rx-w2"]
    steps = await DBOS.list_workflow_steps_async("bulk-sender")
    assert [step["function_name"] for step in steps] == ["DBOS.send_bulk"]


async def test_send_to_forks_reaches_every_fork_of_the_destination(dbos: type[DBOS]) -> None:
    with SetWorkflowID("rx-original"):
        original = await DBOS.start_workflow_async(receiver, "t", 1)
    await DBOS.send_async("rx-original", "x", "t")
    assert await original.get_result() == ["x"]
    fork = await DBOS.fork_workflow_async("rx-original", 1)
    fork_of_fork = await DBOS.fork_workflow_async(fork.workflow_id, 1)
    await DBOS.send_async("rx-original", "not for forks", "t")
    await DBOS.send_async("rx-original", "for every fork", "t", send_to_forks=True)
    # Each fork's first message is the one sent to forks: the other one never reached them.
    assert await fork.get_result() == ["for every fork"]
    assert await fork_of_fork.get_result() == ["for every fork"]


async def test_send_bulk_to_forks(dbos: type[DBOS]) -> None:
    with SetWorkflowID("rx-bulk-original"):
        original = await DBOS.start_workflow_async(receiver, "t", 1)
    await DBOS.send_async("rx-bulk-original", "x", "t")
    await original.get_result()
    fork = await DBOS.fork_workflow_async("rx-bulk-original", 1)
    await DBOS.send_bulk_async([SendMessage("rx-bulk-original", "bulk", "t")], send_to_forks=True)
    assert await fork.get_result() == ["bulk"]


async def test_bad_bulk_sends_are_refused_before_anything_is_written(
    dbos: type[DBOS], database_url: str
) -> None:
    await DBOS.start_workflow_async(receiver, "t", 0)
    for bad in (
        [],
        ["not a SendMessage"],
        [SendMessage("", "x")],
        [SendMessage("rx", "x", topic=3)],  # type: ignore[arg-type]
    ):
        with pytest.raises(DBOSInvalidArgumentError):
            await DBOS.send_bulk_async(bad)  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError, match="twice"):
        await DBOS.send_bulk_async(
            [SendMessage("rx", 1, None, "k"), SendMessage("rx", 2, None, "k")]
        )
    assert await _message_count(database_url) == 0


# Streams --------------------------------------------------------------------------------------


@DBOS.workflow()
async def numbers(count: int, hold_after: int | None = None) -> None:
    for i in range(count):
        await DBOS.write_stream_async("n", i)
        if i == hold_after:
            await hold()
    await DBOS.close_stream_async("n")


@DBOS.step()
async def hold() -> None:
    waypoints.passed("holding")
    await waypoints.gate("holding").wait()


@DBOS.workflow()
async def offset_reader(workflow_id: str, offset: int) -> Any:
    return await DBOS.read_stream_offset_async(workflow_id, "n", offset, timeout_seconds=20)


async def test_read_stream_from_an_offset(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(numbers, 5)
    await handle.get_result()
    values = DBOS.read_stream_async(handle.workflow_id, "n", offset=2)
    assert [value async for value in values] == [2, 3, 4]
    assert [
        value async for value in DBOS.read_stream_async(handle.workflow_id, "n", offset=9)
    ] == []


async def test_read_stream_times_out_waiting_for_a_value(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(numbers, 3, 0)
    await waypoints.reached("holding")
    received: list[Any] = []
    with pytest.raises(DBOSStreamTimeoutError):
        async for value in DBOS.read_stream_async(handle.workflow_id, "n", timeout_seconds=0.2):
            received.append(value)
    assert received == [0]
    waypoints.gate("holding").set()
    await handle.get_result()


async def test_read_stream_offset_waits_for_the_value(dbos: type[DBOS]) -> None:
    writer = await DBOS.start_workflow_async(numbers, 4, 0)
    await waypoints.reached("holding")
    with SetWorkflowID("offset-reader"):
        reader = await DBOS.start_workflow_async(offset_reader, writer.workflow_id, 2)
    waypoints.gate("holding").set()
    assert await reader.get_result() == 2
    steps = await DBOS.list_workflow_steps_async("offset-reader")
    assert [step["function_name"] for step in steps] == ["DBOS.readStreamOffset"]
    assert await DBOS.read_stream_offset_async(writer.workflow_id, "n", 0) == 0


async def test_read_stream_offset_past_the_end_of_a_closed_stream_raises(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(numbers, 2)
    await handle.get_result()
    with pytest.raises(DBOSStreamTimeoutError):
        await DBOS.read_stream_offset_async(handle.workflow_id, "n", 2, timeout_seconds=20)


async def test_read_stream_offset_times_out_on_an_open_stream(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(numbers, 2, 0)
    await waypoints.reached("holding")
    with pytest.raises(DBOSStreamTimeoutError):
        await DBOS.read_stream_offset_async(handle.workflow_id, "n", 1, timeout_seconds=0.1)
    waypoints.gate("holding").set()
    await handle.get_result()


async def test_bad_stream_reads_are_refused(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(numbers, 1)
    await handle.get_result()
    wid = handle.workflow_id
    for kwargs in ({"offset": -1}, {"offset": "1"}, {"polling_interval_sec": 0}):
        with pytest.raises(DBOSInvalidArgumentError):
            await anext(DBOS.read_stream_async(wid, "n", **kwargs))
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.read_stream_offset_async(wid, "n", -1)
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.read_stream_offset_async(wid, "n", 0, timeout_seconds=-1)


def test_sync_forms(dbos_sync: type[DBOS]) -> None:
    handle = DBOS.start_workflow(receiver, "t", 2)
    DBOS.send_bulk(
        [SendMessage(handle.workflow_id, "a", "t"), SendMessage(handle.workflow_id, "b", "t")]
    )
    assert handle.get_result() == ["a", "b"]
    writer = DBOS.start_workflow(numbers, 3)
    writer.get_result()
    assert list(DBOS.read_stream(writer.workflow_id, "n", offset=1, timeout_seconds=20)) == [1, 2]
    assert DBOS.read_stream_offset(writer.workflow_id, "n", 2) == 2
    assert DBOS.wait_first([writer], polling_interval_sec=0.5) is writer


async def test_wait_first_accepts_a_polling_interval(dbos: type[DBOS]) -> None:
    handle = await DBOS.start_workflow_async(numbers, 1)
    assert await DBOS.wait_first_async([handle], polling_interval_sec=0.5) is handle
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.wait_first_async([handle], polling_interval_sec=0)
