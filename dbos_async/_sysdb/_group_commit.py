"""Group commit: many callers' rows written by one statement, each caller told its own fate.

A caller submits a row and awaits its result. When nothing else is being written the caller
writes its row at once, alone, in its own task (no added latency at low load); rows submitted
while flushes are in flight wait and go out together in the next one. So under load one statement and one commit carry many
workflows' checkpoints, and each caller still resumes only after its own row is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

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
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Row, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._flushing: set[asyncio.Task[None]] = set()  # the loop only holds weak references
        self.flushes = 0
        self.rows = 0

    async def submit(self, row: Row) -> Result:
        """Write ``row`` (with whatever else is waiting) and return its result once committed."""
        if not self._pending and self._in_flight < self._max_in_flight:
            # Nothing is waiting: write this row now, in the caller's own task (no hand-off to
            # a flush task, so an idle system pays no extra event-loop hops).
            self._in_flight += 1
            try:
                result = (await self._flush([row]))[0]
            finally:
                self._in_flight -= 1
                if self._pending and self._in_flight < self._max_in_flight:
                    self._start_flush()
            self.flushes += 1
            self.rows += 1
            return result
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._in_flight < self._max_in_flight:
            self._start_flush()
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._write(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _write(self, batch: list[tuple[Row, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._flush([row for row, _ in batch])
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            self.flushes += 1
            self.rows += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            if self._pending and self._in_flight < self._max_in_flight:
                self._start_flush()
