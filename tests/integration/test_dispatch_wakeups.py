"""The dispatcher never leaves queued work waiting for a timer.

Every queue here, the engine's internal one included, is re-checked only every 60 s, and no
other queue is registered while these tests run: work the dispatcher failed to claim when it
should have would wait past the tests' bounded waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    Queue,
    SetEnqueueOptions,
)
from dbos_async._core._registry import default_registry
from dbos_async._core._runtime import current_runtime
from dbos_async._features import _queue_store, _recovery
from dbos_async._features._dispatcher import Dispatcher
from dbos_async._features._enqueue import INTERNAL_QUEUE
from dbos_async._features._recovery import resume_claimed
from dbos_async._sysdb import connect_database
from dbos_async._sysdb._notify import CANCEL, QUEUES
from dbos_async._sysdb._queue_table import list_queue_rows as real_list_queue_rows
from dbos_async._sysdb._queues import claim as real_claim
from dbos_async._sysdb._queues import promote_due_delayed as real_promote
from dbos_async._sysdb._workflows import NewWorkflow, insert_workflow
from tests.integration._locks import until_a_statement_waits_for_a_lock
from tests.waypoints import Waypoints

SLOW_RECHECK = 60.0
queue = Queue("dw_plain", polling_interval_sec=SLOW_RECHECK)
single = Queue("dw_single", worker_concurrency=1, polling_interval_sec=SLOW_RECHECK)
internal = Queue(INTERNAL_QUEUE, polling_interval_sec=SLOW_RECHECK)
for _queue in (queue, single, internal):  # registered only while these tests run
    default_registry.queues.pop(_queue.name, None)

waypoints = Waypoints()


@pytest.fixture(autouse=True)
def _only_slow_queues() -> Iterator[None]:
    saved = dict(default_registry.queues)
    default_registry.queues.clear()
    for slow in (queue, single, internal):
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


def _dispatcher_of_this_process() -> Dispatcher:
    dispatcher = current_runtime().dispatcher
    assert isinstance(dispatcher, Dispatcher)
    return dispatcher


@DBOS.workflow()
async def plain(label: str) -> str:
    return label


async def test_a_delay_announced_while_due_ones_are_promoted_is_not_forgotten(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher promotes due DELAYED workflows and learns when the next delay expires.
    A delayed workflow enqueued while that statement is on its way back (its row committed
    after the statement's snapshot) is not in the answer: its own announcement must still set
    the dispatcher's timer. (It was overwritten: a debounced workflow whose first call
    coincided with the dispatcher's first round waited forever.)"""
    promoting = asyncio.Event()
    release = asyncio.Event()

    async def promote_then_hold(*args: Any, **kwargs: Any) -> Any:
        promoted = await real_promote(*args, **kwargs)
        if promoted[0] and not release.is_set():
            promoting.set()
            await release.wait()
        return promoted

    monkeypatch.setattr("dbos_async._features._dispatcher.promote_due_delayed", promote_then_hold)
    async with asyncio.timeout(20):
        with SetEnqueueOptions(delay_seconds=0.05):
            first = await queue.enqueue_async(plain, "first")
        await promoting.wait()  # ``first`` was promoted; the answer is not back yet
        with SetEnqueueOptions(delay_seconds=0.05):
            second = await queue.enqueue_async(plain, "second")
        release.set()
        assert await first.get_result() == "first"
        assert await second.get_result() == "second"  # not after a 60 s re-check (or never)


async def test_a_delay_moved_later_while_due_ones_are_promoted_is_still_reported(
    database_url: str,
) -> None:
    """A debounce moves a due workflow's delay later while the promotion waits for its row:
    the row is not promoted, and the promotion's answer still names a time to look again (its
    snapshot saw the old delay; it used to report no delay at all, and the workflow waited
    forever)."""
    db = await connect_database(database_url, pool_size=2)
    bouncer = await asyncpg.connect(database_url, server_settings={"search_path": db.schema})
    try:
        now = db.now_ms()
        row = NewWorkflow(
            "bounced", "wf", None, None, b"", "msgpack", "local", "v",
            status="DELAYED", queue_name="dw_plain", delay_until_epoch_ms=now - 1_000,
        )  # fmt: skip
        assert await insert_workflow(db, row)
        bounce = bouncer.transaction()
        await bounce.start()
        await bouncer.execute(
            "UPDATE workflow_status SET delay_until_epoch_ms = $1 WHERE workflow_uuid = 'bounced'",
            now + 60_000,
        )
        promotion = asyncio.ensure_future(real_promote(db))
        await until_a_statement_waits_for_a_lock(bouncer, unless_done=promotion)
        await bounce.commit()
        promoted, next_due = await asyncio.wait_for(promotion, 10)
        assert promoted == []
        assert next_due is not None
        status = await bouncer.fetchval(
            "SELECT status FROM workflow_status WHERE workflow_uuid = 'bounced'"
        )
        assert status == "DELAYED"
    finally:
        await bouncer.close()
        await db.close()


async def test_a_delayed_workflow_whose_announcement_was_lost_is_found_by_the_sweep(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher knows of no delay (it looked: there was none); a delayed workflow's
    announcement is lost (the listening connection was reconnecting, say). The sweep that
    covers lost notifications looks at the delays again. (It reloaded only the queues, and the
    workflow stayed DELAYED until the process restarted.)"""
    async with asyncio.timeout(20):
        assert await (await queue.enqueue_async(plain, "warm")).get_result() == "warm"
        dispatcher = _dispatcher_of_this_process()
        monkeypatch.setattr(dispatcher, "announce", lambda *args, **kwargs: None)  # lost
        with SetEnqueueOptions(delay_seconds=0.05):
            delayed = await queue.enqueue_async(plain, "delayed")
        await dispatcher.reload_all()  # what the sweep runs
        assert await delayed.get_result() == "delayed"


async def test_a_sweeps_older_reading_of_the_queues_does_not_undo_a_newer_one(
    dbos: type[DBOS], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep reads every registered queue; meanwhile another process registers a queue,
    and its notification has this process read that queue. The sweep's older reading, applied
    last, must not remove the queue again (its work waited for the next sweep)."""
    runtime = current_runtime()
    reading, release = asyncio.Event(), asyncio.Event()

    async def read_then_hold(*args: Any, **kwargs: Any) -> Any:
        rows = await real_list_queue_rows(*args, **kwargs)
        if not release.is_set():
            reading.set()
            await release.wait()
        return rows

    monkeypatch.setattr(_queue_store, "list_queue_rows", read_then_hold)
    async with asyncio.timeout(20), DBOSClient(database_url) as client:
        sweep = asyncio.ensure_future(_dispatcher_of_this_process().reload_all())
        await reading.wait()  # the sweep's reading predates the queue
        await client.register_queue_async("dw_registered")
        await _queue_store.reload_queue(runtime, "dw_registered")  # on its notification
        release.set()
        await sweep
        assert runtime.queues.settings("dw_registered") is not None
        handle = await client.enqueue_async(
            {"workflow_name": "plain", "queue_name": "dw_registered"}, "registered"
        )
        assert await handle.get_result() == "registered"


async def test_a_claimed_workflow_still_starting_counts_against_the_worker_limit(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claimed workflow may take a while to start (its recorded steps are read first); a
    claim beside it must count it, or a queue of ``worker_concurrency=1`` runs two at once."""
    starting, release = asyncio.Event(), asyncio.Event()

    async def resume_slowly(*args: Any, **kwargs: Any) -> Any:
        if not release.is_set():
            starting.set()
            await release.wait()
        return await resume_claimed(*args, **kwargs)

    monkeypatch.setattr(_recovery, "resume_claimed", resume_slowly)
    dispatcher = _dispatcher_of_this_process()
    async with asyncio.timeout(20):
        first = await single.enqueue_async(plain, "first")
        await starting.wait()  # claimed, not running yet
        second = await single.enqueue_async(plain, "second")
        settings = current_runtime().queues.settings("dw_single")
        assert settings is not None
        await dispatcher._dispatch("dw_single", settings)  # a claim beside the first
        status = await second.get_status()
        assert status is not None and status.status == "ENQUEUED"
        release.set()
        assert [await first.get_result(), await second.get_result()] == ["first", "second"]


steps_run: list[str] = []


@DBOS.step()
async def noted(label: str) -> str:
    steps_run.append(label)
    return label


@DBOS.workflow()
async def one_noted_step(label: str) -> str:
    return await noted(label)


async def test_a_workflow_cancelled_while_it_is_claimed_never_runs_a_step(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands after a claim read the workflow's row, while the workflow is
    being started here (its recorded steps being read), is heard before it runs: it stops
    before its first step instead of running it and then finding its checkpoint refused."""
    steps_run.clear()
    starting, release = asyncio.Event(), asyncio.Event()

    async def resume_slowly(*args: Any, **kwargs: Any) -> Any:
        starting.set()
        await release.wait()
        return await resume_claimed(*args, **kwargs)

    monkeypatch.setattr(_recovery, "resume_claimed", resume_slowly)
    runtime = current_runtime()
    heard = asyncio.Event()
    cancel_notified = runtime.cancel_notified

    def hearing(workflow_id: str) -> None:
        cancel_notified(workflow_id)
        heard.set()

    runtime.notifier.on(CANCEL, hearing)  # (in place of the engine's own handler, which it calls)
    async with asyncio.timeout(20):
        handle = await queue.enqueue_async(one_noted_step, "after the cancel")
        await starting.wait()  # claimed: PENDING here, not running yet
        await DBOS.cancel_workflow_async(handle.workflow_id)
        await heard.wait()
        release.set()
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handle.get_result()
    assert steps_run == []
    status = await handle.get_status()
    assert status is not None and status.status == "CANCELLED"


async def test_a_cancellation_heard_for_a_workflow_not_running_here_is_kept_a_minute(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process hears every cancellation; those of workflows not running here are kept
    only while a claim could still be starting one of them, then forgotten."""
    from dbos_async._core import _runtime

    runtime = current_runtime()
    runtime.cancel_notified("heard-once")
    assert runtime.cancel_heard("heard-once")
    assert not runtime.cancel_heard("heard-once")  # read once, then forgotten
    assert not runtime.cancel_heard("never-heard")
    monkeypatch.setattr(_runtime, "_CANCEL_HEARD_FOR", 0.0)
    runtime.cancel_notified("old")
    runtime.cancel_notified("new")  # hearing another forgets those older than the window
    assert list(runtime._cancels_heard) in (["old", "new"], ["new"])
    await asyncio.sleep(0.01)
    runtime.cancel_notified("newest")
    assert list(runtime._cancels_heard) == ["newest"]
    assert not runtime.cancel_heard("old")


async def test_promoting_delayed_work_tells_the_other_processes(
    dbos: type[DBOS], database_url: str
) -> None:
    """The process that promotes a due delayed workflow tells every process of work on its
    queue (another may serve it, or have room; it found out at its next re-check)."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(QUEUES, lambda *args: heard.put_nowait(args[-1]))
        with SetEnqueueOptions(delay_seconds=0.05):
            delayed = await queue.enqueue_async(plain, "delayed")
        async with asyncio.timeout(10):
            assert await delayed.get_result() == "delayed"
            while True:
                _token, due, queue_name = (await heard.get()).split("|")
                if queue_name == "dw_plain" and not due:  # not the enqueue's own announcement
                    break
    finally:
        await listener.close()
