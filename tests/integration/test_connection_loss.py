"""Every connection to the system database killed under a running engine: nothing is lost.

The server's backends for the test database are terminated with ``pg_terminate_backend`` (the
machine's Postgres itself keeps running) while workflows wait in ``recv``, in a durable sleep
and inside a step; then the same process sends and enqueues at once. Everything completes,
nothing raises, and no workflow records the outage as its outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from dbos_async import DBOS, Queue
from dbos_async._core._registry import default_registry
from dbos_async._core._runtime import current_runtime
from dbos_async._sysdb import Notifier
from dbos_async._sysdb._notify import EVENTS
from tests.conftest import make_config
from tests.waypoints import Waypoints

waypoints = Waypoints()
after_outage = Queue("after_outage")
default_registry.queues.pop(after_outage.name, None)  # registered only for this module's tests


@pytest.fixture(autouse=True)
def _module_queue() -> Iterator[None]:
    default_registry.add_queue(after_outage)
    waypoints.clear()
    yield
    default_registry.queues.pop(after_outage.name, None)


async def _kill_every_connection(database_url: str) -> int:
    """Terminate every backend connected to the test's database; how many there were."""
    admin = await asyncpg.connect(database_url)
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return killed


async def _heard_through_listen(notifier: Notifier, database_url: str) -> None:
    """Wait until a NOTIFY sent from another connection wakes a waiter of this process."""
    sender = await asyncpg.connect(database_url)
    try:
        async with notifier.subscribe(EVENTS, "probe::k") as woken:
            while True:  # the LISTEN connection may still be coming back: notify until heard
                await sender.execute(f"SELECT pg_notify('{EVENTS}', 'probe::k')")
                if await woken.wait(0.2):
                    return
    finally:
        await sender.close()


@DBOS.step()
async def checkpoint(name: str) -> str:
    waypoints.passed(name)
    return name


@DBOS.step()
async def held_step() -> str:
    waypoints.passed("in step")
    await waypoints.gate("release step").wait()
    return "step done"


@DBOS.workflow()
async def waits_in_recv() -> object:
    await checkpoint("receiving")
    return await DBOS.recv_async("go", timeout_seconds=60)


@DBOS.workflow()
async def waits_in_sleep() -> str:
    await checkpoint("sleeping")
    await DBOS.sleep_async(0.5)
    return await checkpoint("slept")


@DBOS.workflow()
async def waits_in_step() -> list[str]:
    return [await held_step(), await checkpoint("after step")]


@DBOS.workflow()
async def counts(n: int) -> int:
    total = 0
    for i in range(n):
        total += len(await checkpoint(f"c{i % 3}"))
    return total


async def test_killing_every_connection_loses_nothing(dbos: type[DBOS], database_url: str) -> None:
    waypoints.clear()
    receiver = await DBOS.start_workflow_async(waits_in_recv)
    sleeper = await DBOS.start_workflow_async(waits_in_sleep)
    stepper = await DBOS.start_workflow_async(waits_in_step)
    for point in ("receiving", "sleeping", "in step"):
        await waypoints.reached(point)
    notifier = current_runtime().notifier
    listens = notifier.connections_made

    assert await _kill_every_connection(database_url) >= 2  # the pool and the LISTEN connection

    # At once, from the same process: the next statements meet dead connections.
    await DBOS.send_async(receiver.workflow_id, "hello", "go")
    waypoints.gate("release step").set()
    queued = await after_outage.enqueue_async(counts, 4)

    async with asyncio.timeout(30):
        assert await receiver.get_result() == "hello"
        assert await sleeper.get_result() == "slept"
        assert await stepper.get_result() == ["step done", "after step"]
        assert await queued.get_result() == 8
        await _heard_through_listen(notifier, database_url)
    assert notifier.connections_made > listens
    workflows = await DBOS.list_workflows_async()
    assert {w.status for w in workflows} == {"SUCCESS"}


async def test_repeated_connection_kills_under_load(dbos: type[DBOS], database_url: str) -> None:
    """Twenty workflows of twenty steps each, while every connection is killed five times."""
    handles = [await DBOS.start_workflow_async(counts, 20) for _ in range(20)]
    for _ in range(5):
        await waypoints.reached("c1")
        await _kill_every_connection(database_url)
    async with asyncio.timeout(60):
        results = [await handle.get_result() for handle in handles]
    assert results == [40] * 20
    steps = await DBOS.list_workflow_steps_async(handles[0].workflow_id)
    assert [step["function_id"] for step in steps] == list(range(1, 21))


async def test_a_url_naming_several_hosts_reaches_the_one_that_answers(database_url: str) -> None:
    parts = urlsplit(database_url)
    if not parts.hostname:
        pytest.skip("the test server is reached through a Unix socket")
    # Port 1 refuses connections: the engine tries the next host.
    several = f"postgresql://{parts.netloc.replace('@', '@127.0.0.1:1,', 1)}{parts.path}"
    DBOS(config=make_config(several))
    await DBOS.launch_async()
    try:
        assert await counts(2) == len("c0") + len("c1")
    finally:
        await DBOS.destroy_async()
