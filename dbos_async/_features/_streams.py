"""Streams: a workflow appends values under a key; anyone reads them in order until closed.

``write_stream`` and ``close_stream`` run inside a workflow (checkpointed) or one of its steps.
``read_stream`` reads from offset 0 whenever it starts, wakes on each write, and ends at the
close, or when the writing workflow has finished and every value was read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Generator
from typing import Any

import asyncpg

from .._core._context import WorkflowContext, block_on, current_step, current_workflow, runtime_here
from .._core._errors import (
    DBOSNonExistentWorkflowError,
    DBOSNotInWorkflowError,
    DBOSWorkflowConflictIDError,
)
from .._core._runtime import Runtime
from .._core._status import TERMINAL_STATUSES
from .._core._tracing import traced_operation
from .._sysdb._messages import CLOSED_STREAM, read_stream_from, write_stream
from .._sysdb._notify import STREAMS
from ._messaging import record_value, wake
from ._step import NOT_RECORDED, ensure_not_cancelled, refusal, replay_recorded

__all__ = ["close_stream", "read_stream_async", "read_stream_sync", "write_stream_value"]

_OFFSET_RETRIES = 20


def _append(key: str, value: Any, *, close: bool) -> Coroutine[Any, Any, None]:
    operation = "DBOS.closeStream" if close else "DBOS.writeStream"
    ctx = current_workflow()
    if ctx is None:
        raise DBOSNotInWorkflowError(operation)
    runtime = ctx.runtime
    payload = None if close else runtime.codec.dumps(value)
    serialization = CLOSED_STREAM if close else runtime.codec.name
    step = current_step()
    function_id = step.step_id if step is not None else ctx.reserve_function_id()

    async def run() -> None:
        if step is None:
            if replay_recorded(ctx, function_id, operation) is not NOT_RECORDED:
                return
            ensure_not_cancelled(ctx)
        for _ in range(_OFFSET_RETRIES):
            try:
                written = await write_stream(
                    runtime.db,
                    ctx.workflow_id,
                    function_id,
                    key,
                    payload,
                    serialization,
                    as_step=step is None,
                    owner=runtime.executor_id,
                    step_name=operation,
                )
                break
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name != "streams_pkey":
                    raise DBOSWorkflowConflictIDError(ctx.workflow_id) from None
                # A concurrent writer took this offset: append again after it.
        else:
            raise DBOSWorkflowConflictIDError(ctx.workflow_id)
        if not written:
            raise await refusal(ctx)
        wake(runtime, STREAMS, ctx.workflow_id, key, remote=True)

    name = "close_stream" if close else "write_stream"
    return runtime.forward(traced_operation(name, ctx, run()))


def write_stream_value(key: str, value: Any) -> Coroutine[Any, Any, None]:
    """Append ``value`` to this workflow's stream ``key``."""
    return _append(key, value, close=False)


def close_stream(key: str) -> Coroutine[Any, Any, None]:
    """Close this workflow's stream ``key``: readers stop after the values written before."""
    return _append(key, None, close=True)


async def _next_values(
    runtime: Runtime, workflow_id: str, key: str, offset: int, at_most: int | None = None
) -> tuple[list[Any], bool]:
    """The values available from ``offset`` (waiting for at least one), and whether it ended."""
    async with runtime.notifier.subscribe(STREAMS, f"{workflow_id}::{key}") as woken:
        while True:
            status, rows = await read_stream_from(runtime.db, workflow_id, key, offset)
            if status is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
            values: list[Any] = []
            for position, row in enumerate(rows):
                if row["offset"] != offset + position:
                    break  # a concurrent writer's gap: read it on the next round
                if row["serialization"] == CLOSED_STREAM:
                    return values, True
                values.append(runtime.codec.loads(row["value"], row["serialization"]))
                if at_most is not None and len(values) == at_most:
                    break
            if values:
                return values, False
            if status in TERMINAL_STATUSES:
                return [], True
            await woken.wait(None)


async def read_stream_async(workflow_id: str, key: str) -> AsyncGenerator[Any, None]:
    """Yield the values of a workflow's stream ``key`` in order, until it is closed.

    Inside a workflow each value delivered (and the end) is a checkpointed ``DBOS.readStream``
    step, so a replay reads the same sequence.
    """
    runtime = runtime_here()
    ctx = current_workflow() if current_step() is None else None
    if ctx is not None:
        async for value in _read_checkpointed(ctx, workflow_id, key):
            yield value
        return
    offset = 0
    while True:
        values, ended = await runtime.forward(_next_values(runtime, workflow_id, key, offset))
        for value in values:
            yield value
        offset += len(values)
        if ended:
            return


async def _read_checkpointed(
    ctx: WorkflowContext, workflow_id: str, key: str
) -> AsyncIterator[Any]:
    runtime = ctx.runtime
    offset = 0
    while True:
        function_id = ctx.reserve_function_id()
        recorded = replay_recorded(ctx, function_id, "DBOS.readStream")
        if recorded is NOT_RECORDED:
            ensure_not_cancelled(ctx)
            values, _ = await runtime.forward(  # no value means the stream ended
                _next_values(runtime, workflow_id, key, offset, at_most=1)
            )
            recorded = [True, values[0]] if values else [False]
            await record_value(ctx, function_id, "DBOS.readStream", recorded)
        if not recorded[0]:
            return
        yield recorded[1]
        offset += 1


def read_stream_sync(workflow_id: str, key: str) -> Generator[Any, None, None]:
    """:func:`read_stream_async` for sync code: each value is awaited through the bridge, so a
    sync workflow's read is checkpointed exactly like an async one's."""
    runtime = runtime_here()
    values = read_stream_async(workflow_id, key)
    while True:
        try:
            value = block_on(runtime, values.__anext__, operation="DBOS.read_stream")
        except StopAsyncIteration:
            return
        try:
            yield value
        except GeneratorExit:  # the caller stopped reading early
            block_on(runtime, values.aclose, operation="DBOS.read_stream")
            raise
