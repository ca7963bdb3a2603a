"""The scheduler of ``@DBOS.scheduled`` workflows (``_scheduled.py``): it enqueues each tick once.

Every process running the app runs the scheduler. Each tick is enqueued on the internal queue
under the workflow ID ``sched-<name>-<tick time>``, so however many processes see the tick, the
database keeps one workflow: the tick runs exactly once. A tick missed while no process ran is
not replayed (as in DBOS). The workflow is called with ``(scheduled_time, actual_time)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .._core._errors import DBOSException
from .._core._roles import Auth
from .._sysdb._supervisor import cancel_and_wait, supervise
from ._scheduled import Schedule
from ._workflow import Invocation, QueuePlacement, WorkflowCall

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = ["Scheduler"]

logger = logging.getLogger("dbos_async")

F = TypeVar("F", bound=Callable[..., Any])

_MAX_SLEEP = 1.0  # re-read the registry this often: schedules may be declared after launch


class Scheduler:
    """Enqueues due ticks of every registered schedule; one task per process."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._task: asyncio.Task[None] | None = None
        self._next: dict[str, datetime] = {}  # each schedule's next tick, from launch on

    def start(self) -> None:
        """Start watching the clock."""
        self._task = supervise("dbos-scheduler", self._run)

    async def stop(self) -> None:
        """Stop enqueueing ticks."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            now = datetime.now(UTC)
            wake_at = now.timestamp() + _MAX_SLEEP
            for name, schedule in list(self._runtime.registry.schedules.items()):
                tick = self._next.get(name) or schedule.next_after(now)
                while tick <= now:
                    await self._fire(schedule, tick, now)
                    tick = schedule.next_after(tick)
                self._next[name] = tick
                wake_at = min(wake_at, tick.timestamp())
            await asyncio.sleep(max(0.0, wake_at - datetime.now(UTC).timestamp()))

    async def _fire(self, schedule: Schedule, tick: datetime, now: datetime) -> None:
        from ._enqueue import INTERNAL_QUEUE, enqueue

        workflow_id = f"sched-{schedule.info.name}-{tick.isoformat()}"
        call = WorkflowCall(
            invocation=Invocation(schedule.info, None, (tick, now), {}),
            workflow_id=workflow_id,
            parent=None,
            parent_function_id=None,
            auth=Auth(),
            timeout_ms=None,
            deadline_epoch_ms=None,
        )
        try:
            await enqueue(self._runtime, call, QueuePlacement(INTERNAL_QUEUE), "reject")
        except DBOSException as error:
            logger.error("Could not enqueue %s: %s", workflow_id, error)
        except Exception:
            logger.exception("Could not enqueue %s", workflow_id)
