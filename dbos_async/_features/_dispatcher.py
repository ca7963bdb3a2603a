"""The dispatcher: claims this process's share of queued work and runs it.

One task per process. It runs a dispatch round when woken (an enqueue or a completion here, a
NOTIFY from another process, or a delayed workflow coming due) and otherwise sleeps until the
next rate-limit window, delay or safety re-check. Rounds never overlap; wake-ups during a round
cause one more round, so a burst of enqueues costs a few claims, not one each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

from .._core._errors import DBOSException
from .._sysdb._notify import QUEUES
from .._sysdb._queues import ClaimLimits, claim, partitions_with_work, promote_due_delayed
from .._sysdb._supervisor import cancel_and_wait, supervise
from .._sysdb._workflows import now_ms
from ._recovery import resume_claimed

if TYPE_CHECKING:
    from .._core._runtime import Runtime
    from ._queue import Queue

__all__ = ["Dispatcher"]

logger = logging.getLogger("dbos_async")

_SAFETY_SECONDS = 5.0
_UNBOUNDED = 1_000_000


class Dispatcher:
    """Claims queued workflows for this process within every queue's limits, and starts them.

    A round claims only from the queues woken since the last one (an enqueue or completion
    names its queue); the timer's rounds, and the first, sweep every queue. Delayed work is
    promoted only when some delay may have expired.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Workflows this process runs, per (queue, partition): the worker_concurrency count.
        self._running: dict[tuple[str, str | None], set[str]] = {}
        self._woken: set[str] = set()
        self._sweep = True
        self._delays_due_at = 0.0  # epoch ms when a DELAYED workflow may become ready
        self.token = uuid.uuid4().hex[:12]  # marks this process's own NOTIFYs

    def start(self) -> None:
        """Start dispatching."""
        self._task = supervise("dbos-dispatcher", self._run)

    async def stop(self) -> None:
        """Stop dispatching (running workflows are the runtime's to stop)."""
        await cancel_and_wait(self._task)

    def wake(self, queue_name: str, *, delayed_until_ms: int | None = None) -> None:
        """Claim from ``queue_name`` soon (or, for delayed work, once it is due)."""
        if delayed_until_ms is not None:
            self._delays_due_at = min(self._delays_due_at, delayed_until_ms)
        else:
            self._woken.add(queue_name)
        self._wake.set()

    def announce(self, queue_name: str, *, delayed_until_ms: int | None = None) -> None:
        """Tell this process's dispatcher, and through NOTIFY the others', of work on a queue."""
        self.wake(queue_name, delayed_until_ms=delayed_until_ms)
        self._runtime.notifier.publish(
            QUEUES, f"{self.token}|{delayed_until_ms or ''}|{queue_name}"
        )

    def on_notification(self, payload: str) -> None:
        """Handle another process's announcement (this process's own echo is ignored)."""
        token, _, rest = payload.partition("|")
        if token == self.token:
            return
        due, _, queue_name = rest.partition("|")
        self.wake(queue_name, delayed_until_ms=int(due) if due else None)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                pause = await self._round()
            except Exception:
                logger.exception("Dispatch round failed; retrying")
                self._sweep = True
                pause = 1.0
            try:
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            except TimeoutError:
                self._sweep = True  # the safety net, rate windows and delays: look everywhere

    async def _round(self) -> float:
        """Claim what the woken queues allow; return how long to sleep if nothing wakes us."""
        runtime = self._runtime
        queues = runtime.registry.queues
        if self._sweep:
            names = set(queues)
            self._sweep = False
            self._woken.clear()
        else:
            names, self._woken = self._woken, set()
        if now_ms() >= self._delays_due_at:
            promoted, next_due = await promote_due_delayed(runtime.db)
            names.update(promoted)
            self._delays_due_at = float(next_due) if next_due is not None else math.inf
        pause = _SAFETY_SECONDS
        if self._delays_due_at != math.inf:
            pause = min(pause, max(0.0, (self._delays_due_at - now_ms()) / 1000))
        for name in names:
            queue = queues.get(name)
            if queue is not None:
                pause = min(pause, await self._dispatch(queue))
        return pause

    async def _dispatch(self, queue: Queue) -> float:
        partitions: list[str | None] = [None]
        if queue.partition_queue:
            partitions = list(await partitions_with_work(self._runtime.db, queue.name))
        pause = _SAFETY_SECONDS
        for partition in partitions:
            running = self._running.setdefault((queue.name, partition), set())
            local = queue.worker_concurrency or _UNBOUNDED
            limits = ClaimLimits(
                local_capacity=local - len(running),
                concurrency=queue.concurrency,
                rate_limit=queue.limiter["limit"] if queue.limiter else None,
                rate_period_ms=int(queue.limiter["period"] * 1000) if queue.limiter else None,
            )
            rows = await claim(
                self._runtime.db,
                queue.name,
                self._runtime.executor_id,
                self._runtime.application_version,
                limits,
                partition,
            )
            for row in rows:
                await self._start(row, running)
            if queue.limiter is not None:
                # A rate-limited queue may have work that only a later window admits.
                pause = min(pause, queue.limiter["period"] / 4)
        return pause

    async def _start(self, row: Any, running: set[str]) -> None:
        workflow_id = row["workflow_uuid"]
        try:
            task = await resume_claimed(self._runtime, row, has_steps=row["has_steps"])
        except DBOSException as error:
            logger.error("Cannot run dequeued workflow %s: %s", workflow_id, error)
            return
        except Exception:
            # Claimed but not started: it stays PENDING here, and the heartbeat's check for
            # unattended workflows gives it back to its queue.
            logger.exception("Could not start dequeued workflow %s", workflow_id)
            return
        queue_name = row["queue_name"]
        if task is None:  # finished without running (dead-lettered or denied): its slot is free
            self.wake(queue_name)
            return
        running.add(workflow_id)
        task.add_done_callback(lambda _: self._finished(running, queue_name, workflow_id))

    def _finished(self, running: set[str], queue_name: str, workflow_id: str) -> None:
        running.discard(workflow_id)
        self.wake(queue_name)
