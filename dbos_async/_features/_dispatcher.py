"""The dispatcher: claims this process's share of queued work and runs it.

One task per process. It runs a dispatch round when woken (an enqueue or a completion here, a
NOTIFY from another process, a delayed workflow coming due, a queue's settings changing) and
otherwise sleeps until the next rate-limit window, delay, or a queue's safety re-check (every
``polling_interval_sec`` of that queue). Rounds never overlap; a round starts a claim from each
queue it looks at, and a queue may have two claims in flight (the next one is on its way while
one commits; each counts the room the other took). Wake-ups meanwhile cause one more claim, so
a burst of enqueues costs a few claims, not one each.

A workflow holds its slot in this process (``worker_concurrency``) until its code has returned:
a cancelled workflow whose sync step still runs in a thread keeps it, and keeps its slot in the
shared count too (``held_queue_slot``) until this process reports the code returned. Once its
code has returned, the workflow hands its outcome to the dispatcher, whose next claim from the
queue records it in the same statement (or, under shared limits, the same transaction, before
counting): one commit frees the slot and fills it again. A partitioned queue's workflows record
their outcomes themselves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core._errors import DBOSAwaitedWorkflowCancelledError
from .._core._queue_settings import ClaimShape, QueueSettings
from .._sysdb._notify import QUEUES
from .._sysdb._queues import (
    ClaimLimits,
    claim,
    partitions_with_work,
    promote_due_delayed,
    release_queue_slot,
)
from .._sysdb._supervisor import cancel_and_wait, supervise
from .._sysdb._workflows import Outcome, complete_workflow
from ._queue_store import reload_queue, reload_queues
from ._recovery import resume_or_log

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = ["Dispatcher"]

logger = logging.getLogger("dbos_async")

_UNBOUNDED = 1_000_000
_SKIPPED_RECHECK = 0.0005  # seconds: the first re-check after a claim passed over a locked row
# Claims in flight at once from one queue: the next one is on its way while one commits (a
# partitioned queue claims one partition after another, one claim at a time).
_CLAIMS_IN_FLIGHT = 2

# An outcome waiting for the next claim from its queue, and its writer's future: whether it was
# recorded, or None when the dispatcher did not write it (its writer then writes it alone).
_Waiting = tuple[Outcome, "asyncio.Future[bool | None]"]


def _room(limit: int | None, used: int) -> int:
    return _UNBOUNDED if limit is None else limit - used


def _period_ms(limiter: Any) -> int | None:
    return int(limiter["period"] * 1000) if limiter else None


class Dispatcher:
    """Claims queued workflows for this process within every queue's limits, and starts them.

    A round starts a claim from each queue woken since the last one (an enqueue or completion
    names its queue) and from those whose safety re-check is due; each claim also records the
    outcomes handed over for its queue (:meth:`record_outcome`). Delayed work is promoted only
    when some delay may have expired. ``listening`` limits the queues this process dequeues
    from.
    """

    def __init__(self, runtime: Runtime, listening: set[str] | None = None) -> None:
        self._runtime = runtime
        self._listening = listening
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Workflows this process runs, per queue and partition (the worker limits' counts).
        self._running: dict[str, dict[str | None, set[str]]] = {}
        self._woken: set[str] = set()
        self._to_reload: set[str] = set()
        self._next_check: dict[str, float] = {}  # monotonic time of each queue's re-check
        self._look_everywhere = False  # the clock moved: the next round looks at every queue
        self._skipped_rechecks: dict[str, float] = {}  # the next re-check after a locked row
        self._delays_due_at = 0.0  # epoch ms when a DELAYED workflow may become ready
        self.token = uuid.uuid4().hex[:12]  # marks this process's own NOTIFYs
        self._unwatch_clock: Callable[[], None] | None = None
        self._outcomes: dict[str, list[_Waiting]] = {}  # per queue, for its next claim
        self._claims: dict[str, set[asyncio.Task[None]]] = {}  # per queue, claims in flight
        self._reserved: dict[str, int] = {}  # per queue, the room its claims in flight took

    def start(self) -> None:
        """Dispatch in the background (after :meth:`reload_all` loaded the registered queues)."""
        self._unwatch_clock = self._runtime.clock.on_change(self._on_clock_changed)
        self._task = supervise("dbos-dispatcher", self._run)

    async def stop(self) -> None:
        """Stop dispatching. Running workflows are the runtime's to stop; an outcome handed over
        and not yet written goes back to its workflow, which writes it alone."""
        if self._unwatch_clock is not None:
            self._unwatch_clock()
        await cancel_and_wait(self._task)
        for claims in self._claims.values():
            for task in list(claims):
                await cancel_and_wait(task)
        outcomes, self._outcomes = self._outcomes, {}
        for waiting in outcomes.values():
            _not_written(waiting)

    def records_outcomes_of(self, queue_name: str) -> bool:
        """Whether :meth:`record_outcome` takes the outcomes of ``queue_name``'s workflows: this
        dispatcher runs and claims from that queue, which is not partitioned (a claim then
        covers the whole queue)."""
        if self._task is None or self._task.done() or not self._listens_to(queue_name):
            return False
        settings = self._runtime.queues.settings(queue_name)
        return settings is not None and not settings.partitioned

    async def record_outcome(
        self,
        queue_name: str,
        workflow_id: str,
        status: str,
        output: bytes | None,
        error: bytes | None,
    ) -> bool:
        """Record the outcome of a workflow of ``queue_name`` whose code returned here, with the
        next claim from that queue; whether it was recorded (as
        :func:`~.._sysdb._workflows.complete_workflow` tells)."""
        runtime = self._runtime
        outcome = Outcome(workflow_id, status, output, error, runtime.executor_id)
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._outcomes.setdefault(queue_name, []).append((outcome, future))
        self.wake(queue_name)
        recorded = await future
        if recorded is None:  # the dispatcher stopped, or its claim failed: write it alone
            return await complete_workflow(
                runtime.db, workflow_id, status, output, error, owner=outcome.owner
            )
        return recorded

    def _on_clock_changed(self) -> None:
        """The engine's clock moved (a test advanced it): delays and rate windows may have
        come due in every queue, so look at all of them in the next round (a round running now
        read the clock before it moved)."""
        self._look_everywhere = True
        self._wake.set()

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
        self._tell_others(queue_name, delayed_until_ms)

    def _tell_others(self, queue_name: str, delayed_until_ms: int | None = None) -> None:
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

    def on_settings_changed(self, queue_name: str) -> None:
        """A registered queue's settings changed (or it was registered or deleted): reload it
        before the next round."""
        self._to_reload.add(queue_name)
        self._wake.set()

    async def reload_all(self) -> None:
        """Reload every registered queue and look at the delays again (after notifications
        may have been lost: a delayed workflow's announcement among them)."""
        self._delays_due_at = 0.0
        self._wake.set()
        await reload_queues(self._runtime)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                pause = await self._round()
            except Exception:
                logger.exception("Dispatch round failed; retrying")
                self._next_check.clear()  # look everywhere next time
                pause = 1.0
            if pause > 0:
                try:
                    async with asyncio.timeout(pause):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def _listens_to(self, name: str) -> bool:
        return self._listening is None or name in self._listening or name.startswith("_dbos")

    async def _round(self) -> float:
        """Claim what the woken and due queues allow; return how long to sleep if nothing
        wakes us."""
        runtime = self._runtime
        while self._to_reload:
            name = self._to_reload.pop()
            try:
                await reload_queue(runtime, name)
            except BaseException:
                self._to_reload.add(name)  # read it again in the next round
                raise
        now = time.monotonic()
        catalog = runtime.queues
        known = {name for name in catalog.names() if self._listens_to(name)}
        if self._look_everywhere:
            self._look_everywhere = False
            self._next_check.clear()
        names = {name for name in known if self._next_check.get(name, 0.0) <= now}
        names.update(self._woken & known)
        self._woken.clear()
        if runtime.clock.now_ms() >= self._delays_due_at:
            names.update(await self._promote_due() & known)
        pause = math.inf
        for name in names:
            settings = catalog.settings(name)
            if settings is not None:
                self._claim_soon(name, settings)
                pause = min(pause, _rate_pause(settings))
        for name in list(self._outcomes):
            if not self.records_outcomes_of(name):  # the queue went away meanwhile
                _not_written(self._outcomes.pop(name))
        now = time.monotonic()
        for name in known:
            if not self._claims.get(name):  # (a claim in flight wakes the loop when it ends)
                pause = min(pause, self._next_check.get(name, now) - now)
        if self._delays_due_at != math.inf:
            pause = min(pause, (self._delays_due_at - runtime.clock.now_ms()) / 1000)
        return max(0.0, min(pause, 60.0))

    async def _promote_due(self) -> set[str]:
        """Promote the due DELAYED workflows; return the queues that got work.

        The answer's next delay cannot include a delay committed after the statement's
        snapshot: a :meth:`wake` for one arrives while it runs, and is kept (the timer takes
        the earlier of the two)."""
        self._delays_due_at = math.inf
        try:
            promoted, next_due = await promote_due_delayed(self._runtime.db)
        except BaseException:
            self._delays_due_at = 0.0  # look again in the next round
            raise
        if next_due is not None:
            self._delays_due_at = min(self._delays_due_at, next_due)
        for queue_name in promoted:  # other processes may serve them (or have room) too
            self._tell_others(queue_name)
        return set(promoted)

    def _claim_soon(self, name: str, settings: QueueSettings) -> None:
        """Start a claim from queue ``name``, unless as many as it may have are in flight
        already: then one more as soon as one of them is done."""
        in_flight = self._claims.setdefault(name, set())
        # (A claim that just ended is done before its callback takes it out of the set.)
        in_flight.difference_update([task for task in in_flight if task.done()])
        if len(in_flight) >= (1 if settings.partitioned else _CLAIMS_IN_FLIGHT):
            self._woken.add(name)  # claimed from when one of them is done
            return
        task = asyncio.get_running_loop().create_task(self._claim_from(name, settings))
        in_flight.add(task)
        task.add_done_callback(functools.partial(self._claim_done, in_flight))

    def _claim_done(self, in_flight: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        """A claim ended: its queue may claim again (a wake-up that came meanwhile), and the
        round's pause may change."""
        in_flight.discard(task)
        self._wake.set()

    async def _claim_from(self, name: str, settings: QueueSettings) -> None:
        """One claim from queue ``name`` (:meth:`_dispatch`), then when to look at it again."""
        try:
            skipped_locked = await self._dispatch(name, settings)
        except Exception:
            logger.exception("Claiming from queue %s failed; retrying", name)
            self._next_check[name] = time.monotonic() + 1.0
        else:
            recheck = settings.polling_interval_sec
            if skipped_locked:
                # A candidate was locked for a moment by another statement (say, a waiter
                # marking it awaited): look again soon, then less and less soon.
                recheck = min(recheck, self._skipped_rechecks.get(name, _SKIPPED_RECHECK))
                self._skipped_rechecks[name] = recheck * 2
            else:
                self._skipped_rechecks.pop(name, None)
            self._next_check[name] = time.monotonic() + recheck

    async def _dispatch(self, name: str, settings: QueueSettings) -> bool:
        """Claim and start what queue ``name`` allows here, less the room of the claims in
        flight beside this one, and record the outcomes handed over for it. Returns whether a
        claim passed over a candidate that was locked at that moment."""
        shape = settings.claim_shape()
        partitions: list[str | None] = [None]
        if settings.partitioned:
            partitions = list(await partitions_with_work(self._runtime.db, name))
            random.shuffle(partitions)  # no partition waits behind the others every round
        running = self._running.setdefault(name, {})
        skipped_locked = False
        outcomes = self._outcomes.pop(name, [])
        for partition in partitions:
            in_queue = sum(len(ids) for ids in running.values()) + self._reserved.get(name, 0)
            in_partition = running.setdefault(partition, set())
            queue_room = _room(shape.worker, in_queue)
            if queue_room <= 0 and not outcomes:
                break
            local = max(0, min(queue_room, _room(shape.partition_worker, len(in_partition))))
            reserved = local if shape.worker is not None else 0  # (unbounded: nothing to share)
            self._reserved[name] = self._reserved.get(name, 0) + reserved
            try:
                claimed = await claim(
                    self._runtime.db,
                    name,
                    self._runtime.executor_id,
                    self._runtime.application_version,
                    _limits(shape, local),
                    partition,
                    self._runtime.application_name,
                    latest_version=self._runtime.runs_latest_version,
                    outcomes=[outcome for outcome, _ in outcomes],
                )
            except BaseException:
                self._reserved[name] -= reserved
                _not_written(outcomes)
                raise
            # The room of each row claimed stays taken until the row runs: starting one may
            # wait (for its recorded steps), and a claim beside this one must not count it free.
            held = min(reserved, len(claimed.rows))
            self._reserved[name] -= reserved - held
            for (_, future), recorded in zip(outcomes, claimed.recorded, strict=True):
                if not future.done():
                    future.set_result(recorded)
            outcomes = []
            skipped_locked = skipped_locked or claimed.skipped_locked
            try:
                for row in claimed.rows:
                    await self._start(row, in_partition)
                    if held:
                        held -= 1
                        self._reserved[name] -= 1
            finally:
                self._reserved[name] -= held
        _not_written(outcomes)  # a partitioned queue's (its workflows wrote them alone)
        return skipped_locked

    async def _start(self, row: Any, running: set[str]) -> None:
        workflow_id = row["workflow_uuid"]
        task = await resume_or_log(self._runtime, row, recorded=None if row["has_steps"] else {})
        queue_name = row["queue_name"]
        if task is None:  # not running (it ended at once, or could not start): its slot is free
            self.wake(queue_name)
            return
        running.add(workflow_id)
        # The slot is free once the workflow's code has returned: the next claim overlaps the
        # commit of its outcome.
        self._runtime.when_code_returned(
            workflow_id, lambda: self._finished(running, queue_name, workflow_id)
        )

        def ended(task: asyncio.Task[Any]) -> None:
            if not task.cancelled() and isinstance(
                task.exception(), DBOSAwaitedWorkflowCancelledError
            ):
                self._runtime.when_code_returned(
                    workflow_id, lambda: self._runtime.background(self._release(workflow_id))
                )

        task.add_done_callback(ended)

    def _finished(self, running: set[str], queue_name: str, workflow_id: str) -> None:
        running.discard(workflow_id)
        self.wake(queue_name)

    async def _release(self, workflow_id: str) -> None:
        held = await release_queue_slot(self._runtime.db, workflow_id)
        if held is not None:
            self.announce(held)


def _rate_pause(settings: QueueSettings) -> float:
    """How soon a rate window of the queue may admit more (inf without a rate limit): a
    rate-limited queue may have work that only a later window admits."""
    shape = settings.claim_shape()
    limiters = [limiter for limiter in (shape.rate, shape.partition_rate) if limiter]
    return min((limiter["period"] / 4 for limiter in limiters), default=math.inf)


def _not_written(waiting: list[_Waiting]) -> None:
    """Hand outcomes back to their writers, to write alone."""
    for _, future in waiting:
        if not future.done():
            future.set_result(None)


def _limits(shape: ClaimShape, local_capacity: int) -> ClaimLimits:
    rate, partition_rate = shape.rate, shape.partition_rate
    return ClaimLimits(
        local_capacity=local_capacity,
        concurrency=shape.concurrency,
        rate_limit=rate["limit"] if rate else None,
        rate_period_ms=_period_ms(rate),
        partition_concurrency=shape.partition_concurrency,
        partition_rate_limit=partition_rate["limit"] if partition_rate else None,
        partition_rate_period_ms=_period_ms(partition_rate),
    )
