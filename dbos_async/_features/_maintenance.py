"""Housekeeping over the whole system database: garbage collection and the global timeout.

``garbage_collect`` deletes finished workflows (and everything recorded for them) created
before a cutoff, or all but the newest ``rows_threshold`` workflows; ``global_timeout``
cancels every workflow still pending, enqueued or delayed that was created before a cutoff.
Both work through the application's own workflows (and those nobody owns) in batches of
:data:`BATCH` rows, each batch a short statement, so neither holds long locks; they return how
many workflows they deleted or cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from .._core._context import runtime_here
from .._core._errors import DBOSInvalidArgumentError
from .._core._runtime import Runtime
from .._core._validation import check_int
from .._sysdb._maintenance import active_before, finished_before, nth_newest_created_at
from ._management import delete_recorded, managed

__all__ = ["BATCH", "garbage_collect", "global_timeout"]

BATCH = 1000
"""Workflows deleted or cancelled per statement."""


def garbage_collect(
    *, cutoff_epoch_timestamp_ms: int | None = None, rows_threshold: int | None = None
) -> Coroutine[Any, Any, int]:
    """Delete the finished workflows created before ``cutoff_epoch_timestamp_ms``, and those
    older than the ``rows_threshold`` newest workflows; how many were deleted. Workflows still
    running are never deleted."""
    if cutoff_epoch_timestamp_ms is None and rows_threshold is None:
        raise DBOSInvalidArgumentError(
            "garbage_collect needs cutoff_epoch_timestamp_ms, rows_threshold, or both"
        )
    if cutoff_epoch_timestamp_ms is not None:
        check_int("cutoff_epoch_timestamp_ms", cutoff_epoch_timestamp_ms, minimum=0)
    if rows_threshold is not None:
        check_int("rows_threshold", rows_threshold, minimum=1)
    runtime = runtime_here()

    async def work() -> int:
        cutoffs = [] if cutoff_epoch_timestamp_ms is None else [cutoff_epoch_timestamp_ms]
        if rows_threshold is not None:
            nth = await nth_newest_created_at(runtime.db, rows_threshold, runtime.application_name)
            if nth is not None:
                cutoffs.append(nth)
        if not cutoffs:
            return 0
        cutoff = max(cutoffs)
        return await _in_batches(
            runtime,
            lambda: finished_before(runtime.db, cutoff, BATCH, runtime.application_name),
            lambda ids: delete_recorded(runtime, ids, False),
        )

    return managed("DBOS.garbageCollect", runtime, work)


def global_timeout(cutoff_epoch_timestamp_ms: int) -> Coroutine[Any, Any, int]:
    """Cancel every workflow still pending, enqueued or delayed that was created before
    ``cutoff_epoch_timestamp_ms``; how many were cancelled."""
    check_int("cutoff_epoch_timestamp_ms", cutoff_epoch_timestamp_ms, minimum=0)
    runtime = runtime_here()

    async def work() -> int:
        return await _in_batches(
            runtime,
            lambda: active_before(
                runtime.db, cutoff_epoch_timestamp_ms, BATCH, runtime.application_name
            ),
            lambda ids: runtime.cancel(ids),
        )

    return managed("DBOS.globalTimeout", runtime, work)


async def _in_batches(
    runtime: Runtime,
    batch: Callable[[], Coroutine[Any, Any, list[str]]],
    act: Callable[[list[str]], Coroutine[Any, Any, Any]],
) -> int:
    done = 0
    while True:
        ids = await batch()
        if not ids:
            return done
        await act(ids)
        done += len(ids)
        if len(ids) < BATCH:
            return done
