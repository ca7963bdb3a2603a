"""Schedules stored in the system database: created, listed, paused, triggered, back-filled and
deleted at runtime, from ``DBOS`` and from a ``DBOSClient``; every tick once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSInvalidArgumentError,
    Queue,
    SetWorkflowID,
)
from dbos_async.testing import Clock
from tests.waypoints import Waypoints

points = Waypoints()
runs: list[tuple[datetime, Any]] = []


@pytest.fixture(autouse=True)
def _fresh() -> None:
    points.clear()
    runs.clear()


@DBOS.workflow()
async def report(scheduled_time: datetime, context: Any) -> str:
    runs.append((scheduled_time, context))
    points.passed("ran")
    return f"{scheduled_time.isoformat()} {context}"


@DBOS.workflow()
async def witness(scheduled_time: datetime, context: Any) -> None:
    points.passed("witnessed")


def not_a_workflow(scheduled_time: datetime, context: Any) -> None: ...


def second_after(moment: datetime) -> datetime:
    """The first whole second strictly after ``moment``: an every-second schedule's next tick."""
    return moment.replace(microsecond=0) + timedelta(seconds=1)


@DBOS.dbos_class()
class Reports:
    @DBOS.workflow()
    async def method(self, scheduled_time: datetime, context: Any) -> None: ...


async def test_a_created_schedule_fires_each_tick_with_its_context(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    """Created at runtime, a schedule fires the ticks the clock passes, with
    ``(scheduled_time, context)``, under ``sched-<name>-<tick>``; it is listed, and deleting it
    stops it."""
    dbos_clock.freeze()
    created = dbos_clock.now_datetime()
    await DBOS.create_schedule_async(
        schedule_name="every-second",
        workflow_fn=report,
        schedule="* * * * * *",
        context={"team": "ops"},
    )
    dbos_clock.advance(timedelta(seconds=2))  # passes exactly two ticks
    await points.reached("ran", 2)
    first = second_after(created)
    ticks = [first, first + timedelta(seconds=1)]
    assert sorted(tick for tick, _ in runs) == ticks
    # The clock stands still: no third tick was enqueued.
    enqueued = await DBOS.list_workflows_async(workflow_id_prefix="sched-every-second-")
    assert sorted(w.workflow_id for w in enqueued) == [
        f"sched-every-second-{t.isoformat()}" for t in ticks
    ]
    tick, context = runs[0]
    assert context == {"team": "ops"}
    assert tick.tzinfo is not None and tick.microsecond == 0
    handle = await DBOS.retrieve_workflow_async(f"sched-every-second-{tick.isoformat()}")
    assert await handle.get_result() == f"{tick.isoformat()} {{'team': 'ops'}}"
    # A tick's run is named after its schedule just after it is enqueued (it may have run
    # already): once a third tick has run, the first two are named.
    dbos_clock.advance(timedelta(seconds=1))
    await points.reached("ran")
    listed = await DBOS.list_workflows_async(schedule_name="every-second")
    assert len(listed) >= 2
    schedule = await DBOS.get_schedule_async("every-second")
    assert schedule is not None
    assert (schedule["workflow_name"], schedule["status"], schedule["context"]) == (
        "report",
        "ACTIVE",
        {"team": "ops"},
    )
    assert schedule["last_fired_at"] is not None
    assert [s["schedule_name"] for s in await DBOS.list_schedules_async()] == ["every-second"]
    await DBOS.delete_schedule_async("every-second")
    assert await DBOS.get_schedule_async("every-second") is None


async def test_pause_stops_ticks_and_resume_restarts_them(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    """A paused schedule enqueues nothing however many ticks pass; resumed, it fires again
    (from then on: the ticks passed while paused are not run)."""
    dbos_clock.freeze()
    await DBOS.create_schedule_async(
        schedule_name="paused", workflow_fn=report, schedule="* * * * * *"
    )
    dbos_clock.advance(timedelta(seconds=1))  # passes exactly one tick
    await points.reached("ran")
    await DBOS.pause_schedule_async("paused")
    paused = await DBOS.get_schedule_async("paused")
    assert paused is not None and paused["status"] == "PAUSED"
    assert [s["schedule_name"] for s in await DBOS.list_schedules_async(status="PAUSED")] == [
        "paused"
    ]
    # An hour of ticks passes while paused. A witness schedule created after the pause shows
    # the scheduler has looked at the clock since: the look that enqueued the witness's tick
    # (or any before it) would have enqueued the paused schedule's ticks too.
    await DBOS.create_schedule_async(
        schedule_name="witness", workflow_fn=witness, schedule="0 * * * *"
    )
    dbos_clock.advance(timedelta(hours=1))
    await points.reached("witnessed")
    assert len(await DBOS.list_workflows_async(workflow_id_prefix="sched-paused-")) == 1
    assert len(runs) == 1
    await DBOS.resume_schedule_async("paused")
    resumed = dbos_clock.now_datetime()
    dbos_clock.advance(timedelta(seconds=1))
    await points.reached("ran")
    assert runs[-1][0] == second_after(resumed)
    assert len(await DBOS.list_workflows_async(workflow_id_prefix="sched-paused-")) == 2


async def test_trigger_and_backfill_run_ticks_once(dbos: type[DBOS]) -> None:
    """``trigger_schedule`` runs the workflow now; ``backfill_schedule`` runs the ticks in a
    past window, once each however often it is asked."""
    await DBOS.create_schedule_async(
        schedule_name="hourly", workflow_fn=report, schedule="0 * * * *", context=7
    )
    handle = await DBOS.trigger_schedule_async("hourly")
    assert handle.workflow_id.startswith("sched-hourly-trigger-")
    # Named on the schedule from its insert on, not by a later update.
    listed = await DBOS.list_workflows_async(schedule_name="hourly")
    assert [w.workflow_id for w in listed] == [handle.workflow_id]
    assert (await handle.get_result()).endswith(" 7")
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    first = await DBOS.backfill_schedule_async("hourly", start, start + timedelta(hours=3))
    again = await DBOS.backfill_schedule_async("hourly", start, start + timedelta(hours=3))
    assert [h.workflow_id for h in first] == [
        "sched-hourly-2026-01-01T01:00:00+00:00",
        "sched-hourly-2026-01-01T02:00:00+00:00",
    ]
    assert [h.workflow_id for h in again] == [h.workflow_id for h in first]
    for h in first:
        await h.get_result()
    assert sorted(t.hour for t, _ in runs if t.year == 2026 and t.month == 1) == [1, 2]
    sync_handles = await asyncio.to_thread(
        DBOS.backfill_schedule, "hourly", start, start + timedelta(hours=2)
    )
    assert [h.workflow_id for h in sync_handles] == [first[0].workflow_id]


async def test_backfill_in_a_time_zone_across_a_daylight_saving_change(
    dbos: type[DBOS],
) -> None:
    """A daily 01:30 New York schedule, back-filled over the autumn change: one run a day,
    named by its local time."""
    await DBOS.create_schedule_async(
        schedule_name="ny",
        workflow_fn=report,
        schedule="30 1 * * *",
        cron_timezone="America/New_York",
    )
    handles = await DBOS.backfill_schedule_async(
        "ny", datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 3, 0, tzinfo=UTC)
    )
    assert [h.workflow_id for h in handles] == [
        "sched-ny-2026-11-01T01:30:00-04:00",
        "sched-ny-2026-11-02T01:30:00-05:00",
    ]


async def test_automatic_backfill_runs_the_ticks_missed(
    dbos: type[DBOS], database_url: str
) -> None:
    """With ``automatic_backfill``, the ticks after the last one recorded (missed while no
    process ran it) are run when the scheduler takes the schedule up again."""
    await DBOS.create_schedule_async(
        schedule_name="catch-up",
        workflow_fn=report,
        schedule="0 * * * *",
        automatic_backfill=True,
        context="late",
    )
    await DBOS.pause_schedule_async("catch-up")
    three_hours_ago = (datetime.now(UTC) - timedelta(hours=3)).replace(
        minute=0, second=0, microsecond=0
    )
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE dbos.workflow_schedules SET last_fired_at = $1 WHERE schedule_name = $2",
            three_hours_ago.isoformat(),
            "catch-up",
        )
    finally:
        await conn.close()
    await DBOS.resume_schedule_async("catch-up")
    await points.reached("ran", 3)
    hours = sorted(t for t, _ in runs)
    assert hours[:3] == [three_hours_ago + timedelta(hours=h) for h in (1, 2, 3)]


async def test_scheduled_decorator_schedules_are_listed(
    dbos: type[DBOS], dbos_clock: Clock
) -> None:
    """A workflow declared with ``@DBOS.scheduled`` appears in ``list_schedules``."""

    @DBOS.scheduled("0 0 1 1 *")
    @DBOS.workflow()
    async def new_year(scheduled_time: datetime, actual_time: datetime) -> None: ...

    try:
        name = new_year.__qualname__
        # The scheduler looks for new declarations every second, and at once when the clock
        # moves: move it by nothing, so it looks now.
        dbos_clock.advance(0)
        for _ in range(100):  # nothing to await for "written": poll for the row (5 s at most)
            if await DBOS.get_schedule_async(name) is not None:
                break
            await asyncio.sleep(0.01)
        schedule = await DBOS.get_schedule_async(name)
        assert schedule is not None and schedule["schedule"] == "0 0 1 1 *"
    finally:
        from dbos_async._core._registry import default_registry

        default_registry.schedules.pop(new_year.__qualname__, None)


async def test_apply_schedules_is_all_or_nothing(dbos: type[DBOS]) -> None:
    """``apply_schedules`` writes every schedule or none; applied again it replaces them,
    keeping a paused one paused."""
    Queue("reports-queue")
    await DBOS.apply_schedules_async(
        [
            {"schedule_name": "a", "workflow_fn": report, "schedule": "0 0 * * *"},
            {
                "schedule_name": "b",
                "workflow_fn": report,
                "schedule": "0 1 * * *",
                "queue_name": "reports-queue",
            },
        ]
    )
    await DBOS.pause_schedule_async("a")
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.apply_schedules_async(
            [
                {"schedule_name": "a", "workflow_fn": report, "schedule": "0 2 * * *"},
                {"schedule_name": "c", "workflow_fn": report, "schedule": "not cron"},
            ]
        )
    await DBOS.apply_schedules_async(
        [{"schedule_name": "a", "workflow_fn": report, "schedule": "0 3 * * *"}]
    )
    listed = {s["schedule_name"]: s for s in await DBOS.list_schedules_async()}
    assert sorted(listed) == ["a", "b"]
    assert (listed["a"]["schedule"], listed["a"]["status"]) == ("0 3 * * *", "PAUSED")
    assert listed["b"]["queue_name"] == "reports-queue"
    handle = await DBOS.trigger_schedule_async("b")
    status = await handle.get_status()
    assert status is not None and status.queue_name == "reports-queue"


async def test_bad_schedules_are_refused_and_nothing_is_written(dbos: type[DBOS]) -> None:
    async def create(**overrides: Any) -> None:
        arguments: dict[str, Any] = {
            "schedule_name": "bad",
            "workflow_fn": report,
            "schedule": "0 * * * *",
            **overrides,
        }
        await DBOS.create_schedule_async(**arguments)

    with pytest.raises(DBOSInvalidArgumentError, match="cron"):
        await create(schedule="every day")
    with pytest.raises(DBOSInvalidArgumentError, match="time zone"):
        await create(cron_timezone="Nowhere/Special")
    with pytest.raises(DBOSInvalidArgumentError):
        await create(workflow_fn=not_a_workflow)
    with pytest.raises(DBOSInvalidArgumentError, match="instance method"):
        await create(workflow_fn=Reports().method)
    with pytest.raises(DBOSException, match="no-such-queue"):
        await create(queue_name="no-such-queue")
    with pytest.raises(DBOSInvalidArgumentError):
        await create(schedule_name="")
    with pytest.raises(DBOSInvalidArgumentError, match="automatic_backfill"):
        await create(automatic_backfill="yes")
    assert await DBOS.list_schedules_async() == []
    await create()
    with pytest.raises(DBOSInvalidArgumentError, match="already exists"):
        await create(schedule="0 0 * * *")
    with pytest.raises(DBOSInvalidArgumentError, match="does not exist"):
        await DBOS.pause_schedule_async("missing")
    with pytest.raises(DBOSInvalidArgumentError, match="does not exist"):
        await DBOS.trigger_schedule_async("missing")
    listed = await DBOS.list_schedules_async()
    assert [(s["schedule_name"], s["schedule"]) for s in listed] == [("bad", "0 * * * *")]


@DBOS.workflow()
async def schedules_from_a_workflow() -> int:
    await DBOS.create_schedule_async(
        schedule_name="from-workflow", workflow_fn=report, schedule="0 0 * * *"
    )
    return len(await DBOS.list_schedules_async())


async def test_schedule_calls_inside_a_workflow_are_steps(dbos: type[DBOS]) -> None:
    """Inside a workflow, creating a schedule is a checkpointed step: replayed, it is not done
    again (no "already exists"). ``apply_schedules`` is refused there."""
    workflow_id = str(uuid.uuid4())
    with SetWorkflowID(workflow_id):
        assert await schedules_from_a_workflow() == 1
    with SetWorkflowID(workflow_id):
        assert await schedules_from_a_workflow() == 1
    steps = await DBOS.list_workflow_steps_async(workflow_id)
    assert [s["function_name"] for s in steps] == ["DBOS.createSchedule", "DBOS.listSchedules"]

    @DBOS.workflow()
    async def applies() -> None:
        await DBOS.apply_schedules_async([])

    with pytest.raises(DBOSException, match="inside a workflow"):
        await applies()


async def test_a_client_manages_schedules_by_workflow_name(
    dbos: type[DBOS], database_url: str
) -> None:
    """A ``DBOSClient`` creates, lists, triggers, pauses and deletes schedules, naming the
    workflow; an undeclared workflow is refused."""
    async with DBOSClient(system_database_url=database_url) as client:
        await client.create_schedule_async(
            schedule_name="client-made",
            workflow_name="report",
            schedule="0 0 * * *",
            context="from client",
            application_name="test-app",
        )
        with pytest.raises(DBOSException, match="declares"):
            await client.create_schedule_async(
                schedule_name="nothing",
                workflow_name="not-declared",
                schedule="0 0 * * *",
                application_name="test-app",
            )
        listed = await client.list_schedules_async(application_name="test-app")
        assert [s["schedule_name"] for s in listed] == ["client-made"]
        handle = await client.trigger_schedule_async("client-made")
        assert (await handle.get_result()).endswith(" from client")
        await client.pause_schedule_async("client-made")
        schedule = await client.get_schedule_async("client-made")
        assert schedule is not None and schedule["status"] == "PAUSED"
        await client.delete_schedule_async("client-made")
        assert await client.list_schedules_async() == []
