"""``@DBOS.scheduled``: cron validation and ticks delivered to the workflow."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from dbos_async import DBOS, DBOSInvalidArgumentError

ticks: asyncio.Queue[tuple[datetime, datetime]] | None = None


@pytest.mark.parametrize("cron", ["not a cron", "61 * * * *", "* * * * * * * *", 5])
def test_bad_cron_is_rejected_at_decoration(cron: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.scheduled(cron)  # type: ignore[arg-type]


def test_scheduling_a_plain_function_is_rejected() -> None:
    def not_a_workflow(scheduled_time: datetime, actual_time: datetime) -> None: ...

    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.scheduled("* * * * *")(not_a_workflow)


async def test_schedule_declared_after_launch_delivers_its_ticks(dbos: type[DBOS]) -> None:
    global ticks
    ticks = asyncio.Queue()

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    async def tick_every_second(scheduled_time: datetime, actual_time: datetime) -> None:
        assert ticks is not None
        ticks.put_nowait((scheduled_time, actual_time))

    try:
        # Two ticks run as two workflows, possibly finishing out of order.
        first, second = sorted([await asyncio.wait_for(ticks.get(), 5) for _ in range(2)])
    finally:
        from dbos_async._core._registry import default_registry

        default_registry.schedules.pop(tick_every_second.__qualname__, None)
    scheduled_time, actual_time = first
    assert scheduled_time.microsecond == 0 and scheduled_time.tzinfo is not None
    assert actual_time >= scheduled_time
    assert (second[0] - first[0]).total_seconds() == 1
    status = await DBOS.get_workflow_status_async(
        f"sched-{tick_every_second.__qualname__}-{scheduled_time.isoformat()}"
    )
    assert status is not None and status.queue_name == "_dbos_internal_queue"
