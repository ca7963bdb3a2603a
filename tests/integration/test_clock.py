"""Time under the test's control: every durable wait of the engine follows the engine's clock.

Each test freezes the clock, lets a workflow reach its wait (``wait_for_pending``, or the
state the engine records), advances the clock by hours or days, and sees the work that came
due run at once. No test here waits for real time to pass.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbos_async import DBOS, Debouncer, Queue, SetEnqueueOptions, SetWorkflowTimeout
from dbos_async.testing import Clock
from tests.conftest import make_config
from tests.waypoints import Waypoints

DAY = timedelta(days=1)

points = Waypoints()
seen_ticks: list[str] = []

clock_delay_queue = Queue("clock_delay")
clock_rate_queue = Queue("clock_rate", limiter={"limit": 1, "period": 3600})


@DBOS.workflow()
async def sleeps_a_day() -> str:
    await DBOS.sleep_async(DAY.total_seconds())
    return "awake"


@DBOS.workflow()
async def waits_an_hour_for_mail() -> Any:
    return await DBOS.recv_async("mail", timeout_seconds=3600)


@DBOS.workflow()
async def waits_a_day_for_an_event(target: str) -> Any:
    return await DBOS.get_event_async(target, "never", timeout_seconds=DAY.total_seconds())


@DBOS.workflow()
async def waits_forever() -> None:
    await DBOS.recv_async("never", timeout_seconds=10 * DAY.total_seconds())


@DBOS.workflow()
async def stamp(label: str) -> str:
    points.passed("ran")
    return label


@DBOS.workflow()
async def on_schedule(tick: datetime, context: Any) -> str:
    seen_ticks.append(tick.isoformat())
    points.passed("tick")
    return tick.isoformat()


@pytest.fixture(autouse=True)
def fresh_points() -> None:
    points.clear()
    seen_ticks.clear()


async def _status(workflow_id: str) -> str:
    status = await DBOS.get_workflow_status_async(workflow_id)
    assert status is not None
    return status.status


async def test_a_workflow_that_sleeps_a_day_finishes_when_the_day_is_skipped(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(sleeps_a_day)
    await dbos_clock.wait_for_pending(1)
    dbos_clock.advance(DAY - timedelta(seconds=1))
    assert await _status(handle.workflow_id) == "PENDING"
    dbos_clock.advance(timedelta(seconds=1))
    assert await asyncio.wait_for(handle.get_result(), 10) == "awake"


async def test_recv_and_get_event_time_out_on_the_engine_clock(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    mail = await DBOS.start_workflow_async(waits_an_hour_for_mail)
    event = await DBOS.start_workflow_async(waits_a_day_for_an_event, mail.workflow_id)
    await dbos_clock.wait_for_pending(2)
    dbos_clock.advance(timedelta(hours=1))
    assert await asyncio.wait_for(mail.get_result(), 10) is None
    assert await _status(event.workflow_id) == "PENDING"
    dbos_clock.advance(DAY)
    assert await asyncio.wait_for(event.get_result(), 10) is None


async def test_a_message_still_arrives_before_the_clock_runs_out(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(waits_an_hour_for_mail)
    await dbos_clock.wait_for_pending(1)
    dbos_clock.advance(timedelta(minutes=59))
    await DBOS.send_async(handle.workflow_id, "hello", "mail")
    assert await asyncio.wait_for(handle.get_result(), 10) == "hello"


async def test_a_workflow_timeout_is_measured_on_the_engine_clock(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    with SetWorkflowTimeout(2 * 3600):
        handle = await DBOS.start_workflow_async(waits_forever)
    await dbos_clock.wait_for_pending(2)  # its deadline, and its recv
    dbos_clock.advance(timedelta(hours=2))
    with pytest.raises(Exception, match="cancel"):
        await asyncio.wait_for(handle.get_result(), 10)
    assert await _status(handle.workflow_id) == "CANCELLED"


async def test_a_delayed_enqueue_runs_when_its_delay_is_skipped(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    with SetEnqueueOptions(delay_seconds=6 * 3600):
        handle = await clock_delay_queue.enqueue_async(stamp, "late")
    assert await _status(handle.workflow_id) == "DELAYED"
    dbos_clock.advance(timedelta(hours=5))
    assert await _status(handle.workflow_id) == "DELAYED"
    dbos_clock.advance(timedelta(hours=1))
    assert await asyncio.wait_for(handle.get_result(), 10) == "late"


async def test_a_rate_limit_window_opens_when_the_clock_moves_past_it(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    handles = [await clock_rate_queue.enqueue_async(stamp, label) for label in ("a", "b")]
    # One of them runs in this window (which one is up to the claim: a row locked for a
    # moment is passed over), and the other waits for the next window, however long it takes.
    results = {asyncio.ensure_future(handle.get_result()): handle for handle in handles}
    done, waiting = await asyncio.wait(results, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(waiting) == 1
    (later,) = waiting
    assert await _status(results[later].workflow_id) == "ENQUEUED"
    dbos_clock.advance(timedelta(minutes=59))
    assert await _status(results[later].workflow_id) == "ENQUEUED"
    dbos_clock.advance(timedelta(minutes=1, seconds=1))
    assert {await asyncio.wait_for(later, 10), done.pop().result()} == {"a", "b"}


def _next_nine_oclock(clock: Clock) -> datetime:
    """The first 9:00 (UTC) after the clock's now: the next tick of ``0 9 * * *``."""
    now = clock.now_datetime()
    first = now.replace(hour=9, minute=0, second=0, microsecond=0)
    return first if first > now else first + DAY


async def test_a_schedule_fires_the_ticks_the_clock_passes(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    await DBOS.create_schedule_async(
        schedule_name="daily", workflow_fn=on_schedule, schedule="0 9 * * *"
    )
    first = _next_nine_oclock(dbos_clock)
    dbos_clock.advance(first - dbos_clock.now_datetime() + timedelta(days=1))
    await points.reached("tick", 2)
    assert seen_ticks == [first.isoformat(), (first + DAY).isoformat()]
    handle = await DBOS.retrieve_workflow_async(f"sched-daily-{first.isoformat()}")
    assert await asyncio.wait_for(handle.get_result(), 10) == first.isoformat()


async def test_a_schedule_made_before_the_schedulers_first_round_fires_from_its_creation(
    database_url: str, dbos_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's first round waits for the database; a schedule created meanwhile, with
    the clock moving on before that round reads it, must still fire the ticks since its
    creation (the round used to start it at the clock's reading by then, skipping them)."""
    from dbos_async._features import _scheduler
    from dbos_async._sysdb._schedules import upsert_declared_schedules as real_upsert

    first_round = asyncio.Event()

    async def held_upsert(*args: Any) -> None:
        await first_round.wait()
        await real_upsert(*args)

    monkeypatch.setattr(_scheduler, "upsert_declared_schedules", held_upsert)
    dbos_clock.freeze()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    try:
        await DBOS.create_schedule_async(
            schedule_name="early", workflow_fn=on_schedule, schedule="0 9 * * *"
        )
        first = _next_nine_oclock(dbos_clock)
        dbos_clock.advance(first - dbos_clock.now_datetime() + timedelta(hours=1))
        first_round.set()
        await points.reached("tick")
        assert seen_ticks == [first.isoformat()]
    finally:
        first_round.set()
        await DBOS.destroy_async()


async def test_a_debounced_workflow_starts_a_period_after_the_last_call(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    debouncer = Debouncer.create_async(stamp)
    handle = await debouncer.debounce_async("key", 3600, "one")
    dbos_clock.advance(timedelta(minutes=30))
    again = await debouncer.debounce_async("key", 3600, "two")
    assert again.workflow_id == handle.workflow_id
    dbos_clock.advance(timedelta(minutes=59))
    assert await _status(handle.workflow_id) == "DELAYED"
    dbos_clock.advance(timedelta(minutes=1))
    assert await asyncio.wait_for(handle.get_result(), 10) == "two"


def test_a_sync_test_advances_the_clock_of_the_background_loop(
    dbos_sync: type[DBOS], dbos_clock: Clock
) -> None:
    dbos_clock.freeze()
    handle = DBOS.start_workflow(sleeps_a_day)
    asyncio.run(dbos_clock.wait_for_pending(1))  # from the test's thread, on a loop of its own
    dbos_clock.advance(DAY)
    assert handle.get_result() == "awake"


async def test_a_recovered_sleeper_keeps_its_deadline_on_the_same_clock(
    dbos: type[DBOS], dbos_clock: Clock, dbos_test: Any
) -> None:
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(sleeps_a_day)
    await dbos_clock.wait_for_pending(1)
    await dbos_test.crash()
    dbos_clock.advance(DAY)
    await dbos_test.recover()
    recovered = await DBOS.retrieve_workflow_async(handle.workflow_id)
    assert await asyncio.wait_for(recovered.get_result(), 10) == "awake"
    assert datetime.fromtimestamp(dbos_clock.now(), UTC) > datetime.now(UTC)
