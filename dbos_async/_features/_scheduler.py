"""The scheduler: every process enqueues the due ticks of its application's active schedules.

Schedules live in the system database (``_schedules``), those declared with
``@DBOS.scheduled`` too (written at launch). The scheduler keeps them in memory with each one's
next tick and sleeps until the earliest; a change anywhere is announced on ``SCHEDULES``, which
makes it reload at once (and the notifier's periodic sweep reloads too, in case a notification
was lost). Each tick is enqueued under ``sched-<name>-<tick>``: however many processes see it,
the database keeps one workflow, so the tick runs once.

A schedule declared in code runs only in the processes that declare it (a declaration removed
from the code leaves its row behind, which then fires nothing). A schedule seen for the first
time by this process (at launch, or when created, changed or
resumed) starts with its next tick after now; with ``automatic_backfill`` the ticks after its
last recorded tick are enqueued first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._sysdb._schedules import NewSchedule, list_schedule_rows, upsert_declared_schedules
from .._sysdb._supervisor import cancel_and_wait, supervise
from ._cron import Cron
from ._schedule_runs import enqueue_tick

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = ["Scheduler"]

logger = logging.getLogger("dbos_async")

_MAX_SLEEP = 1.0  # look at the registry this often: @DBOS.scheduled may come after launch


@dataclass(slots=True)
class _Plan:
    """An active schedule as this process runs it: its row, its cron and its next tick."""

    row: Any
    cron: Cron
    next_tick: datetime

    @staticmethod
    def signature(row: Any) -> tuple[Any, ...]:
        """What makes a schedule's plan change when its row does."""
        return tuple(
            row[column]
            for column in (
                "schedule_id", "workflow_name", "workflow_class_name", "schedule", "context",
                "cron_timezone", "queue_name", "automatic_backfill", "declared_in_code",
            )
        )  # fmt: skip


class Scheduler:
    """Enqueues due ticks of the application's active schedules; one task per process."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._task: asyncio.Task[None] | None = None
        self._plans: dict[str, _Plan] = {}
        self._changed = asyncio.Event()
        self._declared: set[str] | None = None  # the @DBOS.scheduled names written
        self._unwatch_clock: Callable[[], None] | None = None
        self._looked_at: datetime | None = None  # the last time due ticks were enqueued

    def start(self) -> None:
        """Write the schedules declared in code, then start watching the clock."""
        # Launch is the first look: a schedule created before the task's first round (which
        # waits for the database) starts there, not at whatever the clock reads by then.
        self._looked_at = self._runtime.clock.now_datetime()
        self._unwatch_clock = self._runtime.clock.on_change(self._changed.set)
        self._task = supervise("dbos-scheduler", self._run)

    async def stop(self) -> None:
        """Stop enqueueing ticks."""
        if self._unwatch_clock is not None:
            self._unwatch_clock()
        await cancel_and_wait(self._task)

    def on_changed(self, _schedule_name: str = "") -> None:
        """A schedule was created, changed or deleted somewhere: reload before the next tick."""
        self._changed.set()

    async def reload_all(self) -> None:
        """Reload the schedules soon (a notification may have been lost)."""
        self._changed.set()

    async def declare(self) -> None:
        """Write the schedules declared with ``@DBOS.scheduled`` in this process."""
        runtime = self._runtime
        declared = [
            NewSchedule(
                schedule_name=schedule.info.name,
                workflow_name=schedule.info.name,
                workflow_class_name=schedule.info.class_name,
                schedule=schedule.cron,
                context=None,
                context_serialization=None,
                automatic_backfill=False,
                cron_timezone=None,
                queue_name=None,
                declared_in_code=True,
                application_name=runtime.application_name,
            )
            for schedule in runtime.registry.schedules.values()
        ]
        await upsert_declared_schedules(runtime.db, declared)

    async def _run(self) -> None:
        while True:
            declared = set(self._runtime.registry.schedules)
            if self._declared != declared:
                await self.declare()  # (if it fails, the next round writes them again)
                self._declared = declared
                self._changed.set()
            clock = self._runtime.clock
            now = clock.now_datetime()  # before the reload reads: a schedule made meanwhile
            if self._changed.is_set():  # starts at its creation, not at a later look
                self._changed.clear()
                await self._reload(now)
            for plan in list(self._plans.values()):
                await self._fire_due(plan, now)
            self._looked_at = now
            wake_at = min((plan.next_tick for plan in self._plans.values()), default=None)
            delay = (
                _MAX_SLEEP if wake_at is None else (wake_at - clock.now_datetime()).total_seconds()
            )
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the stop's
            # cancellation when the event is set at the same moment, and the loop runs on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(delay, _MAX_SLEEP))):
                    await self._changed.wait()

    async def _reload(self, now: datetime) -> None:
        runtime = self._runtime
        rows = await list_schedule_rows(
            runtime.db, statuses=["ACTIVE"], own_application=runtime.application_name
        )
        plans: dict[str, _Plan] = {}
        for row in rows:
            name = row["schedule_name"]
            if row["declared_in_code"] and name not in runtime.registry.schedules:
                continue  # declared by the code of other processes (or of an older version)
            kept = self._plans.get(name)
            if kept is not None and _Plan.signature(kept.row) == _Plan.signature(row):
                plans[name] = kept
                continue
            try:
                cron = Cron(row["schedule"], row["cron_timezone"])
            except Exception as invalid:  # written by hand, or by another version
                logger.error("Schedule %s cannot run: %s", name, invalid)
                continue
            plans[name] = _Plan(row, cron, cron.next_after(self._first_look(row, now)))
            if row["automatic_backfill"] and row["last_fired_at"]:
                await self._backfill(row, cron, now)
        self._plans = plans

    def _first_look(self, row: Any, now: datetime) -> datetime:
        """Where a schedule new to this process starts: where the last look left off (at first,
        the launch), or at its creation if later, so a tick that came due between its creation
        and this reload is not skipped."""
        if self._looked_at is None:
            return now
        created = datetime.fromtimestamp(row["created_at"] / 1000, UTC)
        return min(now, max(self._looked_at, created))

    async def _backfill(self, row: Any, cron: Cron, now: datetime) -> None:
        """Enqueue the ticks missed since the schedule's last recorded one."""
        try:
            last = datetime.fromisoformat(row["last_fired_at"])
        except ValueError:
            return
        for tick in cron.ticks_between(last, now):
            await self._fire(row, tick)

    async def _fire_due(self, plan: _Plan, now: datetime) -> None:
        while plan.next_tick <= now:
            await self._fire(plan.row, plan.next_tick)
            plan.next_tick = plan.cron.next_after(plan.next_tick)

    async def _fire(self, row: Any, tick: datetime) -> None:
        workflow_id = f"sched-{row['schedule_name']}-{tick.isoformat()}"
        try:
            await enqueue_tick(self._runtime, row, tick, workflow_id, last_fired=True)
        except Exception:
            logger.exception("Could not enqueue %s", workflow_id)
