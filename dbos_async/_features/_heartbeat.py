"""Heartbeats: a fleet recovers the work of a member that died, without it coming back.

Every ``executor_heartbeat_interval_sec`` each process records its executor's heartbeat (one
statement, which also reports the executors whose heartbeat lapsed). When an executor stays
silent longer than ``executor_adoption_timeout_sec``, a live process adopts its work: queued
workflows go back to their queues, the others become this executor's and resume from their
last recorded step. Each workflow moves to exactly one adopter. If the silent process was only
slow, its executions find their workflows taken at their next checkpoint (every checkpoint
write is guarded by the owning executor) and stop.

A process adopts only after its own heartbeats have run without a gap for the whole timeout:
after a database outage every process's heartbeat is late, and none may mistake the others for
dead before they had the chance to beat again.

About once per adoption timeout the same loop also takes back this executor's own workflows
that nothing in this process runs any more (say, a dequeue whose commit reply was lost with the
connection): seen unattended on two consecutive checks, queued ones go back to their queues and
the others are recovered. It also forgets executors long gone that own no work.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from .._sysdb._executors import (
    adopt_workflows,
    beat,
    forget_dead_executors,
    requeue_workflows,
    unattended_workflows,
)
from .._sysdb._queues import release_slots_of
from .._sysdb._supervisor import cancel_and_wait, supervise
from ._recovery import recover_workflows, resume_all

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = ["Heartbeat"]

logger = logging.getLogger("dbos_async")


class Heartbeat:
    """Beats for this executor, adopts the work of dead ones, reclaims its own unattended work."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.interval = runtime.config.heartbeat_interval
        self.adoption_timeout = runtime.config.adoption_timeout
        self._hostname = socket.gethostname()
        self._task: asyncio.Task[None] | None = None
        self._last_beat = -float("inf")
        self._steady_since = 0.0  # when the current run of heartbeats without a gap began
        self._suspects: set[str] = set()  # unattended at the previous check

    async def beat(self) -> list[str]:
        """Record a heartbeat now; the executors whose heartbeat lapsed."""
        runtime = self._runtime
        dead = await beat(
            runtime.db,
            runtime.executor_id,
            runtime.application_version,
            self._hostname,
            os.getpid(),
            lapsed_after_ms=int(self.adoption_timeout * 1000),
        )
        now = time.monotonic()
        if now - self._last_beat > 2 * self.interval:
            self._steady_since = now
        self._last_beat = now
        return dead

    def start(self) -> None:
        """Beat, adopt and reclaim every interval, in the background."""
        self._task = supervise("dbos-heartbeat", self._run)

    async def stop(self) -> None:
        """Stop beating (the heartbeat then lapses, and the fleet adopts what is left here)."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        # The housekeeping (this executor's unattended work, long-gone executors) reads more
        # than a heartbeat does: it runs about once per adoption timeout.
        housekeeping_every = max(1, round(self.adoption_timeout / self.interval))
        for beats in itertools.count(1):
            await asyncio.sleep(self.interval)
            dead = await self.beat()
            if dead and time.monotonic() - self._steady_since >= self.adoption_timeout:
                await self.adopt(dead)
            if beats % housekeeping_every == 0:
                await self._reclaim_unattended()
                await forget_dead_executors(
                    self._runtime.db, lapsed_after_ms=int(self.adoption_timeout * 1000)
                )

    async def adopt(self, dead: list[str]) -> None:
        """Take over the PENDING work of the executors in ``dead``."""
        runtime = self._runtime
        requeued = await requeue_workflows(runtime.db, dead, runtime.application_name)
        freed = await release_slots_of(runtime.db, dead)  # their code died with them
        for queue_name in sorted({*requeued, *freed}):
            runtime.dispatcher.announce(queue_name)
        rows = await adopt_workflows(
            runtime.db,
            dead,
            runtime.executor_id,
            runtime.application_version,
            runtime.application_name,
        )
        if rows:
            logger.warning(
                "Executor(s) %s stopped sending heartbeats; executor %s adopted %d of their "
                "workflows",
                ", ".join(dead),
                runtime.executor_id,
                len(rows),
            )
        await resume_all(runtime, rows)
        await forget_dead_executors(runtime.db, lapsed_after_ms=int(self.adoption_timeout * 1000))

    async def _reclaim_unattended(self) -> None:
        runtime = self._runtime
        # Slots kept for cancelled workflows whose code no longer runs here (say, the report
        # that it returned was lost with the connection).
        still_running = [*runtime.active, *runtime.threads_running]
        for queue_name in await release_slots_of(
            runtime.db, [runtime.executor_id], still_running=still_running
        ):
            runtime.dispatcher.announce(queue_name)
        rows = await unattended_workflows(
            runtime.db,
            runtime.executor_id,
            runtime.application_version,
            runtime.application_name,
            older_than_ms=int(self.adoption_timeout * 1000),
        )
        unattended = {row["workflow_uuid"]: row for row in rows}
        for workflow_id in list(unattended):
            if workflow_id in runtime.active:
                del unattended[workflow_id]
        confirmed = [unattended[wid] for wid in self._suspects.intersection(unattended)]
        self._suspects = set(unattended)
        if not confirmed:
            return
        logger.warning(
            "%d PENDING workflows of executor %s were not running here; resuming them",
            len(confirmed),
            runtime.executor_id,
        )
        queued = [row["workflow_uuid"] for row in confirmed if row["queue_name"] is not None]
        if queued:
            for queue_name in await requeue_workflows(
                runtime.db, [runtime.executor_id], runtime.application_name, workflow_ids=queued
            ):
                runtime.dispatcher.announce(queue_name)
        unqueued = [row["workflow_uuid"] for row in confirmed if row["queue_name"] is None]
        await recover_workflows(runtime, unqueued)
