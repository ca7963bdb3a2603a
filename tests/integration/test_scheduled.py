"""``@DBOS.scheduled``: cron validation and ticks delivered to the workflow."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from dbos_async import DBOS, DBOSInvalidArgumentError
from dbos_async.testing import Clock

ticks: asyncio.Queue[tuple[datetime, datetime]] | None = None


@pytest.mark.parametrize("cron", ["not a cron", "61 * * * *", "* * * * * * * *", 5])
def test_bad_cron_is_rejected_at_decoration(cron: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.scheduled(cron)  # type: ignore[arg-type]


def test_scheduling_a_plain_function_is_rejected() -> None:
    def not_a_workflow(scheduled_time: datetime, actual_time: datetime) -> None: ...

    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.scheduled("* * * * *")(not_a_workflow)


async def test_schedule_declared_after_launch_delivers_its_ticks(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    global ticks
    ticks = asyncio.Queue()
    dbos_clock.freeze()
    declared = dbos_clock.now_datetime()

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    async def tick_every_second(scheduled_time: datetime, actual_time: datetime) -> None:
        assert ticks is not None
        ticks.put_nowait((scheduled_time, actual_time))

    name = tick_every_second.__qualname__
    try:
        # The scheduler looks for new declarations every second, and at once when the clock
        # moves: move it by nothing, so it looks now. Its ticks start after the declaration
        # is written, so wait for that before moving the clock on.
        dbos_clock.advance(0)
        async with asyncio.timeout(5):  # a regression fails here, not hangs
            while await DBOS.get_schedule_async(name) is None:  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.01)
        dbos_clock.advance(timedelta(seconds=2))  # passes exactly two ticks
        # Two ticks run as two workflows, possibly finishing out of order.
        first, second = sorted([await asyncio.wait_for(ticks.get(), 5) for _ in range(2)])
        enqueued = await DBOS.list_workflows_async(workflow_id_prefix=f"sched-{name}-")
    finally:
        from dbos_async._core._registry import default_registry

        default_registry.schedules.pop(name, None)
    scheduled_time, actual_time = first
    assert scheduled_time.microsecond == 0 and scheduled_time.tzinfo is not None
    assert scheduled_time == declared.replace(microsecond=0) + timedelta(seconds=1)
    assert (second[0] - first[0]).total_seconds() == 1
    # Both were enqueued at the clock's instant, after their scheduled times.
    assert actual_time == second[1] == dbos_clock.now_datetime()
    assert actual_time >= second[0]
    # The clock stands still: no third tick.
    assert len(enqueued) == 2
    status = await DBOS.get_workflow_status_async(f"sched-{name}-{scheduled_time.isoformat()}")
    assert status is not None and status.queue_name == "_dbos_internal_queue"


async def test_a_declaration_that_failed_to_be_written_is_written_again(
    dbos: type[DBOS], dbos_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing the schedules declared after launch fails once (an error of the database, say):
    the scheduler writes them again (it took them as written, and never ticked)."""
    from dbos_async._core._registry import default_registry
    from dbos_async._features import _scheduler

    real_upsert = _scheduler.upsert_declared_schedules  # type: ignore[attr-defined]
    attempts: list[int] = []

    async def fail_once(*args: object) -> None:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise RuntimeError("the first write fails")
        await real_upsert(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_scheduler, "upsert_declared_schedules", fail_once)

    @DBOS.scheduled("0 0 1 1 *")
    @DBOS.workflow()
    async def yearly(scheduled_time: datetime, actual_time: datetime) -> None: ...

    name = yearly.__qualname__
    try:
        dbos_clock.advance(0)  # the scheduler looks for new declarations now
        async with asyncio.timeout(10):
            while await DBOS.get_schedule_async(name) is None:  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.01)
        assert len(attempts) >= 2
    finally:
        default_registry.schedules.pop(name, None)
