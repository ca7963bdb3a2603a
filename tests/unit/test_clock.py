"""The engine's clock on its own: reading, freezing, advancing, and the waits that follow it."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

from dbos_async import DBOSInvalidArgumentError
from dbos_async.testing import Clock


def test_runs_with_the_wall_clock_until_told_otherwise() -> None:
    clock = Clock()
    before = time.time()
    assert before - 1 <= clock.now() <= time.time() + 1
    assert abs(clock.now_ms() - time.time() * 1000) < 1000
    assert not clock.frozen


def test_freeze_advance_and_thaw() -> None:
    clock = Clock()
    clock.freeze()
    frozen = clock.now_ms()
    assert clock.now_ms() == frozen
    clock.advance(timedelta(days=1))
    assert clock.now_ms() == frozen + 86_400_000
    clock.thaw()
    assert clock.now_ms() >= frozen + 86_400_000  # keeps its lead once running again
    assert clock.now_datetime().timestamp() >= (frozen + 86_400_000) / 1000


def test_advances_add_up_exactly_to_the_millisecond() -> None:
    clock = Clock()
    clock.freeze()
    start = clock.now_ms()
    for _ in range(1000):
        before = clock.now_ms()
        clock.advance(0.3)
        assert clock.now_ms() == before + 300
        clock.advance(timedelta(milliseconds=7))
        assert clock.now_ms() == before + 307
    assert clock.now_ms() == start + 307_000


@pytest.mark.parametrize(
    "bad", [-1, timedelta(seconds=-5), "1s", True, None, float("nan"), float("inf")]
)
def test_advance_rejects_what_is_not_a_forward_duration(bad: object) -> None:
    clock = Clock()
    clock.freeze()
    at = clock.now()
    with pytest.raises(DBOSInvalidArgumentError):
        clock.advance(bad)  # type: ignore[arg-type]
    assert clock.now() == at


async def test_a_sleep_ends_when_the_clock_is_advanced_past_it() -> None:
    clock = Clock()
    clock.freeze()
    sleeper = asyncio.create_task(clock.sleep_until(clock.now() + 3600))
    await clock.wait_for_pending(1)
    clock.advance(timedelta(minutes=59))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not sleeper.done()  # not yet due
    clock.advance(timedelta(minutes=1))
    await asyncio.wait_for(sleeper, 5)
    assert clock.pending == 0


async def test_a_running_clock_still_wakes_sleepers_on_real_time() -> None:
    clock = Clock()
    await asyncio.wait_for(clock.sleep_until(clock.now() + 0.01), 5)


async def test_a_cancelled_sleep_leaves_nothing_behind() -> None:
    clock = Clock()
    sleeper = asyncio.create_task(clock.sleep_until(clock.now() + 3600))
    await clock.wait_for_pending(1)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert clock.pending == 0


async def test_call_at_fires_on_advance_and_can_be_cancelled() -> None:
    clock = Clock()
    clock.freeze()
    fired: list[str] = []
    done = asyncio.Event()

    def due() -> None:
        fired.append("due")
        done.set()

    clock.call_at(clock.now() + 10, due)
    cancelled = clock.call_at(clock.now() + 10, lambda: fired.append("cancelled"))
    cancelled.cancel()
    clock.advance(10)
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0)
    assert fired == ["due"]
    assert clock.pending == 0


async def test_listeners_hear_every_move_until_they_stop() -> None:
    clock = Clock()
    heard: list[bool] = []
    stop = clock.on_change(lambda: heard.append(clock.frozen))
    clock.freeze()
    clock.advance(1)
    clock.thaw()
    stop()
    clock.advance(1)
    assert heard == [True, True, False]


async def test_another_thread_may_advance_the_clock() -> None:
    clock = Clock()
    clock.freeze()
    sleeper = asyncio.create_task(clock.sleep_until(clock.now() + 3600))
    await clock.wait_for_pending(1)
    thread = threading.Thread(target=clock.advance, args=(timedelta(hours=2),))
    thread.start()
    await asyncio.wait_for(sleeper, 5)
    thread.join(5)


async def test_wait_for_pending_is_bounded() -> None:
    clock = Clock()
    with pytest.raises(TimeoutError):
        await clock.wait_for_pending(1, within=0.01)
