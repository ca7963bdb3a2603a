"""The dispatcher never leaves queued work waiting for a timer.

Every queue here, the engine's internal one included, is re-checked only every 60 s, and no
other queue is registered while these tests run: work the dispatcher failed to claim when it
should have would wait past the tests' bounded waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from dbos_async import DBOS, Queue
from dbos_async._core._registry import default_registry
from dbos_async._features._enqueue import INTERNAL_QUEUE
from dbos_async._sysdb._queues import claim as real_claim
from tests.waypoints import Waypoints

SLOW_RECHECK = 60.0
queue = Queue("dw_plain", polling_interval_sec=SLOW_RECHECK)
internal = Queue(INTERNAL_QUEUE, polling_interval_sec=SLOW_RECHECK)
for _queue in (queue, internal):  # registered only while these tests run
    default_registry.queues.pop(_queue.name, None)

waypoints = Waypoints()


@pytest.fixture(autouse=True)
def _only_slow_queues() -> Iterator[None]:
    saved = dict(default_registry.queues)
    default_registry.queues.clear()
    for slow in (queue, internal):
        default_registry.add_queue(slow)
    waypoints.clear()
    yield
    default_registry.queues.clear()
    default_registry.queues.update(saved)


@DBOS.workflow()
async def gated(label: str) -> str:
    waypoints.passed(label)
    await waypoints.gate(label).wait()
    return label


async def test_work_that_arrived_while_two_claims_were_in_flight_is_claimed_when_they_end(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two claims from a queue are in flight (each holding a workflow it claimed, here until
    the test lets them return) when a third workflow arrives: the queue has no room for a third
    claim then, so it is claimed from again when they end. They end in the same turn of the
    loop; the claim that follows must not mistake them for still running."""
    holding: asyncio.Queue[str] = asyncio.Queue()
    release = asyncio.Event()

    async def claim_and_hold(*args: Any, **kwargs: Any) -> Any:
        claimed = await real_claim(*args, **kwargs)
        if claimed.rows and not release.is_set():
            holding.put_nowait(claimed.rows[0]["workflow_uuid"])
            await release.wait()
        return claimed

    monkeypatch.setattr("dbos_async._features._dispatcher.claim", claim_and_hold)
    held = []
    async with asyncio.timeout(20):
        # One at a time: a claim takes every workflow waiting when it runs.
        first = await queue.enqueue_async(gated, "first")
        held.append(await holding.get())
        second = await queue.enqueue_async(gated, "second")
        held.append(await holding.get())
    assert held == [first.workflow_id, second.workflow_id]

    third = await queue.enqueue_async(gated, "third")
    release.set()  # both held claims return in the same turn of the loop
    await waypoints.reached("first")
    await waypoints.reached("second")
    await waypoints.reached("third")  # claimed at once, not at the next 60 s re-check

    for label in ("first", "second", "third"):
        waypoints.gate(label).set()
    async with asyncio.timeout(20):
        assert [await h.get_result() for h in (first, second, third)] == [
            "first",
            "second",
            "third",
        ]
