"""The system database goes away for real: a private Postgres is stopped and restarted.

Each test runs the engine on a throwaway server of its own (never the machine's main one) and
stops, restarts or crash-restarts it under the engine. Launch waits for the database; calls
from outside a workflow wait out an outage (or give up after the retry limit with a named
error); workflows pause and carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dbos_async import DBOS, DBOSDatabaseUnavailableError
from tests.conftest import make_config
from tests.throwaway_postgres import ThrowawayPostgres, skip_without_postgres_binaries
from tests.waypoints import Waypoints

skip_without_postgres_binaries()


class LogEvent(logging.Handler):
    """An event set when the ``dbos_async`` logger emits a message containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self._loop.call_soon_threadsafe(self.event.set)

    async def wait(self, seconds: float = 20) -> None:
        async with asyncio.timeout(seconds):
            await self.event.wait()


@pytest.fixture
async def server() -> AsyncIterator[ThrowawayPostgres]:
    waypoints.clear()
    async with ThrowawayPostgres() as pg:
        yield pg


async def _logged(text: str) -> AsyncIterator[LogEvent]:
    handler = LogEvent(text)
    logger = logging.getLogger("dbos_async")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
async def unreachable() -> AsyncIterator[LogEvent]:
    """Set when the engine notices the system database is unreachable."""
    async for handler in _logged("The system database is unavailable"):
        yield handler


@pytest.fixture
async def waiting_to_launch() -> AsyncIterator[LogEvent]:
    """Set when launch starts waiting for the system database."""
    async for handler in _logged("Waiting for the system database"):
        yield handler


waypoints = Waypoints()


@DBOS.step()
async def add_one(x: int) -> int:
    waypoints.passed("stepped")
    await asyncio.sleep(0.002)  # some work: the workflows are still running when Postgres stops
    return x + 1


@DBOS.workflow()
async def count_to(n: int) -> int:
    total = 0
    for _ in range(n):
        total = await add_one(total)
    return total


async def test_launch_waits_for_a_database_that_is_not_up_yet(
    server: ThrowawayPostgres, waiting_to_launch: LogEvent
) -> None:
    await server.stop()
    DBOS(config=make_config(server.url))
    launching = asyncio.create_task(DBOS.launch_async())
    try:
        await waiting_to_launch.wait()
        assert not launching.done()
        await server.start()
        async with asyncio.timeout(20):
            await launching
        assert await count_to(3) == 3
    finally:
        launching.cancel()
        await DBOS.destroy_async()


async def test_calls_and_workflows_wait_out_a_restart(
    server: ThrowawayPostgres, unreachable: LogEvent
) -> None:
    DBOS(config=make_config(server.url))
    await DBOS.launch_async()
    try:
        before = await DBOS.start_workflow_async(count_to, 500)
        await waypoints.reached("stepped")
        await server.stop()
        # From outside a workflow, while the server is down: the calls wait for it.
        listing = asyncio.create_task(DBOS.list_workflows_async())
        starting = asyncio.ensure_future(DBOS.start_workflow_async(count_to, 5))
        await unreachable.wait()
        assert not listing.done() and not starting.done()
        await server.start()
        async with asyncio.timeout(30):
            assert len(await listing) >= 1
            assert await (await starting).get_result() == 5
            assert await before.get_result() == 500
        statuses = {w.status for w in await DBOS.list_workflows_async()}
        assert statuses == {"SUCCESS"}
    finally:
        await DBOS.destroy_async()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_workflows_pause_through_restarts(server: ThrowawayPostgres, mode: str) -> None:
    DBOS(config=make_config(server.url))
    await DBOS.launch_async()
    try:
        handles = [await DBOS.start_workflow_async(count_to, 200) for _ in range(10)]
        await waypoints.reached("stepped", 10)
        for _ in range(2):
            await server.restart(mode)  # type: ignore[arg-type]
        async with asyncio.timeout(60):
            assert [await h.get_result() for h in handles] == [200] * 10
        statuses = {w.status for w in await DBOS.list_workflows_async()}
        assert statuses == {"SUCCESS"}
    finally:
        await DBOS.destroy_async()


async def test_a_call_outside_a_workflow_gives_up_after_the_retry_limit(
    server: ThrowawayPostgres,
) -> None:
    """With a 0.5 s retry limit a call gives up (rather than waiting out the default 300 s),
    and says how long it waited: the limit, plus at most the attempt running when it ran out."""
    DBOS(config=make_config(server.url, system_database_retry_limit_sec=0.5))
    await DBOS.launch_async()
    try:
        await server.stop()
        with pytest.raises(DBOSDatabaseUnavailableError) as raised:
            async with asyncio.timeout(30):
                await DBOS.list_workflows_async()
        assert 0 < raised.value.waited_seconds < 30
        await server.start()
        assert await DBOS.list_workflows_async() == []
    finally:
        await DBOS.destroy_async()


async def test_failover_to_a_promoted_standby(server: ThrowawayPostgres) -> None:
    """The URL names the primary and its standby; the primary stops for good and the standby
    is promoted: the engine reconnects to the new primary and every workflow completes."""
    async with ThrowawayPostgres(standby_of=server) as standby:
        url = f"postgresql://postgres@127.0.0.1:{server.port},127.0.0.1:{standby.port}/postgres"
        DBOS(config=make_config(url))
        await DBOS.launch_async()
        try:
            handles = [await DBOS.start_workflow_async(count_to, 200) for _ in range(5)]
            await waypoints.reached("stepped", 5)
            await server.stop()
            await standby.promote()
            async with asyncio.timeout(60):
                assert [await h.get_result() for h in handles] == [200] * 5
            assert await count_to(2) == 2
            statuses = {w.status for w in await DBOS.list_workflows_async()}
            assert statuses == {"SUCCESS"}
        finally:
            await DBOS.destroy_async()


async def test_destroy_during_an_outage_returns_and_leaves_work_pending(
    server: ThrowawayPostgres, unreachable: LogEvent
) -> None:
    DBOS(config=make_config(server.url))
    await DBOS.launch_async()
    handle = await DBOS.start_workflow_async(count_to, 100_000)
    await waypoints.reached("stepped")
    await server.stop()
    await unreachable.wait()
    async with asyncio.timeout(20):
        await DBOS.destroy_async()  # workflows and background tasks wait for the database
    await server.start()
    conn = await asyncpg.connect(server.url)
    try:
        status = await conn.fetchval(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1", handle.workflow_id
        )
    finally:
        await conn.close()
    assert status == "PENDING"  # recovered by the next launch, or adopted by another executor
