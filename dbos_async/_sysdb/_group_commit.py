"""Group commit: many callers' rows written by one statement, each caller told its own fate.

A caller submits a row and awaits its result. When nothing else is being written the caller
writes its row at once, alone, in its own task (no added latency at low load); rows submitted
while a flush is in flight wait and go out together in the next one. So under load one
statement and one commit carry many workflows' checkpoints, and each caller still resumes only
after its own row is committed.

A flush starts once the event loop has run what was ready when a row arrived, never at the
row's arrival: when a batch commits, its callers resume together and submit their next rows,
and the first of them would otherwise take the free flush alone (under load, one of the two
flushes in flight carried a single row, and the other one everything else).

A batch written by a background flush is shared by callers of different patience, so the flush
waits for the database however long it is away; each caller waits only as long as its own
patience allows (workflows forever, other callers up to ``patience`` seconds) and then gets
:class:`DBOSDatabaseUnavailableError`. No caller is ever left hanging: a flush that fails, or
is stopped by :meth:`GroupCommit.close`, fails every caller in its batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .._core._errors import DBOSDatabaseUnavailableError
from ._retry import retry_until_available, retrying_forever

__all__ = ["GroupCommit"]

Row = TypeVar("Row")
Result = TypeVar("Result")


class GroupCommit(Generic[Row, Result]):
    """Batches rows for ``flush``, which writes a batch and returns one result per row.

    ``flush`` must be all-or-nothing: if it raises, every caller in that batch gets the error.
    """

    def __init__(
        self,
        flush: Callable[[Sequence[Row]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 500,
        max_in_flight: int = 2,
        patience: float = 300.0,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._patience = patience
        self._pending: list[tuple[Row, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._flush_scheduled = False
        # Each flush in flight and its batch's callers (the loop holds only weak references).
        self._flushing: dict[asyncio.Task[None], list[asyncio.Future[Result]]] = {}
        self._closed = False
        # Callers of limited patience, oldest first (one patience for all, so also soonest
        # deadline first), and one timer for the oldest: a timer per caller cost more than
        # the rest of a workflow start.
        self._waiting: deque[tuple[float, asyncio.Future[Result]]] = deque()
        self._expiry: asyncio.TimerHandle | None = None
        self.flushes = 0
        self.rows = 0

    def submit(self, row: Row) -> Awaitable[Result]:
        """Write ``row`` (with whatever else is waiting): await the result, once committed.

        (A plain function returning what to await: a batched row's caller awaits its future
        directly, one coroutine frame fewer to pass through at every resumption.)
        """
        if self._closed:
            raise _closing()
        if self._idle():
            # Nothing is waiting: write this row now, in the caller's own task (no hand-off to
            # a flush task, so an idle system pays no extra event-loop hops).
            return self._alone(row)
        return self._queued(row)

    def _idle(self) -> bool:
        """Whether this writer is idle (a row submitted now goes out alone, at once)."""
        return not self._pending and self._in_flight == 0

    def _queued(self, row: Row) -> asyncio.Future[Result]:
        """Queue ``row`` for the next flush; the future of its result."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._flush_soon()
        if not retrying_forever():
            self._expire_later(future)
        return future

    async def _alone(self, row: Row) -> Result:
        """Write ``row`` by itself, if there is still room once this runs (a caller may await
        later, or never: a task cancelled before it starts); else queue it."""
        if self._closed:
            raise _closing()
        if not self._idle():
            return await self._queued(row)
        self._in_flight += 1
        try:
            result = (await self._flush([row]))[0]
        finally:
            self._in_flight -= 1
            self._flush_soon()
        self.flushes += 1
        self.rows += 1
        return result

    def _expire_later(self, future: asyncio.Future[Result]) -> None:
        """Fail ``future`` with :class:`DBOSDatabaseUnavailableError` if it is not done when
        this writer's patience runs out."""
        waiting = self._waiting
        while waiting and waiting[0][1].done():  # writes commit in about the order submitted
            waiting.popleft()
        loop = future.get_loop()
        waiting.append((loop.time() + self._patience, future))
        if self._expiry is None:
            self._expiry = loop.call_at(waiting[0][0], self._expire)

    def _expire(self) -> None:
        self._expiry = None
        waiting = self._waiting
        if not waiting:
            return
        loop = waiting[0][1].get_loop()
        now = loop.time()
        while waiting:
            deadline, future = waiting[0]
            if not future.done():
                if deadline > now:
                    self._expiry = loop.call_at(deadline, self._expire)
                    return
                future.set_exception(
                    DBOSDatabaseUnavailableError(self._patience, "the write did not commit")
                )
            waiting.popleft()

    def close(self) -> None:
        """Stop the flushes in flight and refuse new rows; their callers get an error."""
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._waiting.clear()  # each is failed below
        for task, futures in list(self._flushing.items()):
            task.cancel()  # (a flush not started yet never runs: its callers are failed here)
            _fail(futures, _closing())
        pending, self._pending = self._pending, []
        _fail([future for _, future in pending], _closing())

    def _flush_soon(self) -> None:
        """Start flushes of the pending rows once the loop has run what is ready now (the
        other callers resuming this turn submit theirs first)."""
        if (
            self._pending
            and self._in_flight < self._max_in_flight
            and not self._flush_scheduled
            and not self._closed
        ):
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        while self._pending and self._in_flight < self._max_in_flight and not self._closed:
            self._start_flush()

    def _start_flush(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        self._in_flight += 1
        futures = [future for _, future in batch]
        task = asyncio.get_running_loop().create_task(self._write(batch, futures))
        self._flushing[task] = futures  # (:meth:`close` fails them, started or not)
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        del self._flushing[task]

    async def _write(
        self, batch: list[tuple[Row, asyncio.Future[Result]]], futures: list[asyncio.Future[Result]]
    ) -> None:
        retry_until_available()  # callers of every patience share this batch
        try:
            results = await self._flush([row for row, _ in batch])
        except Exception as error:
            _fail(futures, error)
        else:
            self.flushes += 1
            self.rows += len(batch)
            for future, result in zip(futures, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._flush_soon()


def _closing() -> DBOSDatabaseUnavailableError:
    return DBOSDatabaseUnavailableError(0.0, "the database is closing")


def _fail(futures: list[asyncio.Future[Result]], error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
