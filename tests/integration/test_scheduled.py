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
