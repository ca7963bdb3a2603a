"""The dashboard's live feed: every connected browser hears of changes, however browsers come
and go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dbos_async import DBOS, DBOSClient
from dbos_async.admin import _live
from dbos_async.admin._live import Feed


@DBOS.workflow()
async def feed_noted(x: int) -> int:
    return x


@pytest.fixture
async def client(dbos: type[DBOS], database_url: str) -> AsyncIterator[DBOSClient]:
    async with DBOSClient(database_url) as client:
        yield client


async def test_a_browser_connecting_while_the_last_one_leaves_still_hears_of_changes(
    client: DBOSClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last browser leaves: the feed stops, which takes a few turns of the loop (a query in
    flight is cancelled). A browser that connects meanwhile must get a running feed (it got
    none, and heard nothing until it reconnected)."""
    in_query, stopping = asyncio.Event(), asyncio.Event()
    real_as_client = _live.as_client  # type: ignore[attr-defined]

    async def query_slow_to_cancel(*args: Any) -> Any:
        if stopping.is_set():
            return await real_as_client(*args)
        in_query.set()
        try:
            await asyncio.Event().wait()  # a query in flight when the feed is stopped
        except asyncio.CancelledError:
            await stopping.wait()  # releasing the connection, say
            raise

    monkeypatch.setattr(_live, "as_client", query_slow_to_cancel)
    feed = Feed(client)
    feed.recheck_seconds = 0.05
    first_left, second_in = asyncio.Event(), asyncio.Event()
    heard: asyncio.Queue[str] = asyncio.Queue()

    async def first_browser() -> None:
        async with feed.watch():
            await first_left.wait()

    async def second_browser() -> None:
        async with feed.watch() as changes:
            second_in.set()
            while True:
                heard.put_nowait(await changes.get())

    async with asyncio.timeout(20):
        first = asyncio.ensure_future(first_browser())
        await in_query.wait()
        first_left.set()
        while feed._task is None or not feed._task.cancelling():  # noqa: ASYNC110
            await asyncio.sleep(0)  # (until the first browser's leaving stops the feed)
        second = asyncio.ensure_future(second_browser())
        await second_in.wait()
        stopping.set()
        await first
        assert await _heard_of_a_change(heard)
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
    await feed.close()


async def _heard_of_a_change(heard: asyncio.Queue[str]) -> str:
    """Start workflows until the browser hears of a change (the first may come before the feed
    read how things were); the change marker it heard."""
    for attempt in range(20):
        await (await DBOS.start_workflow_async(feed_noted, attempt)).get_result()
        try:
            return await asyncio.wait_for(heard.get(), 0.5)
        except TimeoutError:
            continue
    pytest.fail("the browser heard of no change")
