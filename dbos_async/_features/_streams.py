"""Streams: a workflow appends values under a key; anyone reads them in order until closed.

``write_stream`` and ``close_stream`` run inside a workflow (checkpointed) or one of its steps.
``read_stream`` reads from offset 0 whenever it starts, wakes on each write, and ends at the
close, or when the writing workflow has finished and every value was read.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Generator
from typing import Any

import asyncpg

from .._core._context import WorkflowContext, block_on, current_step, current_workflow, runtime_here
from .._core._errors import (
    DBOSNonExistentWorkflowError,
    DBOSNotInWorkflowError,
    DBOSStreamTimeoutError,
    DBOSWorkflowConflictIDError,
)
from .._core._portable import SerializationType, WorkflowSerializationFormat
from .._core._runtime import Runtime
from .._core._status import TERMINAL_STATUSES
from .._core._sync import awaited
from .._core._tracing import traced_operation
from .._core._validation import check_id, check_int, check_number
from .._sysdb._messages import CLOSED_STREAM, read_stream_from, write_stream
from .._sysdb._notify import STREAMS, WORKFLOW_DONE
from .._sysdb._retry import Backoff
from .._sysdb._workflows import mark_awaited
from ._messaging import record_value, value_format, wake
from ._step import NOT_RECORDED, checkpointed, ensure_not_cancelled, refusal, replay_recorded

__all__ = [
    "check_stream_read",
    "close_stream",
    "next_values",
    "read_stream_async",
    "read_stream_offset",
    "read_stream_sync",
    "write_stream_value",
]

_OFFSET_RETRIES = 20


def _append(
    key: str, value: Any, *, close: bool, serialization_type: object = None
) -> Coroutine[Any, Any, None]:
    operation = "DBOS.closeStream" if close else "DBOS.writeStream"
    fmt = value_format(serialization_type)
    ctx = current_workflow()
    if ctx is None:
        raise DBOSNotInWorkflowError(operation)
    runtime = ctx.runtime
    payload = None if close else runtime.codec.dumps(value, fmt)
    serialization = CLOSED_STREAM if close else runtime.codec.name_of(fmt)
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


def write_stream_value(
    key: str,
    value: Any,
    *,
    serialization_type: SerializationType = WorkflowSerializationFormat.DEFAULT,
) -> Coroutine[Any, Any, None]:
    """Append ``value`` to this workflow's stream ``key``.

    ``serialization_type=WorkflowSerializationFormat.PORTABLE`` stores it as portable JSON
    (the default inside a portable workflow).
    """
    return _append(key, value, close=False, serialization_type=serialization_type)


def close_stream(key: str) -> Coroutine[Any, Any, None]:
    """Close this workflow's stream ``key``: readers stop after the values written before."""
    return _append(key, None, close=True)


async def next_values(
    runtime: Runtime,
    workflow_id: str,
    key: str,
    offset: int,
    at_most: int | None = None,
    timeout_seconds: float | None = None,
) -> tuple[list[Any], bool]:
    """The values available from ``offset`` (waiting for at least one), and whether it ended.

    Raises :class:`DBOSStreamTimeoutError` when no value comes within ``timeout_seconds``.
    """
    # Woken by a value written, and by the writer's end (a stream it never closed ends then).
    stream = runtime.notifier.subscribe(
        STREAMS, f"{workflow_id}::{key}", also=(WORKFLOW_DONE, workflow_id)
    )
    async with stream as woken:
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        busy = Backoff(first=0.001, cap=0.05)
        while True:
            workflow, rows = await read_stream_from(runtime.db, workflow_id, key, offset)
            if workflow is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
            status = workflow["status"]
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
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DBOSStreamTimeoutError(workflow_id, key, timeout_seconds)
            if not workflow["awaited"] and workflow_id not in runtime.active:
                # Written elsewhere: ask for its end to be announced, then read again (it may
                # have ended before the flag was set); held for a moment, read again shortly.
                if not await mark_awaited(runtime.db, workflow_id):
                    await asyncio.sleep(min(busy.next_delay(), remaining or math.inf))
                continue
            await woken.wait(remaining)


def check_stream_read(
    workflow_id: object,
    key: object,
    offset: object,
    polling_interval_sec: object,
    timeout_seconds: object,
) -> None:
    """Check the arguments of a stream read (:class:`DBOSInvalidArgumentError`)."""
    check_id("workflow_id", workflow_id)
    check_id("key", key)
    check_int("offset", offset, minimum=0)
    if polling_interval_sec is not None:  # accepted for DBOS's API; waiting is event-driven
        check_number("polling_interval_sec", polling_interval_sec, minimum=0.001)
    if timeout_seconds is not None:
        check_number("timeout_seconds", timeout_seconds)


async def read_stream_async(
    workflow_id: str,
    key: str,
    *,
    offset: int = 0,
    polling_interval_sec: float | None = None,
    timeout_seconds: float | None = None,
    shard_key: str | None = None,
) -> AsyncGenerator[Any, None]:
    """Yield the values of a workflow's stream ``key`` in order, from ``offset``, until it is
    closed (or the workflow ended and every value was read).

    Each value is waited for up to ``timeout_seconds`` (default: as long as it takes), then
    :class:`DBOSStreamTimeoutError`. Inside a workflow each value delivered (and the end) is a
    checkpointed ``DBOS.readStream`` step, so a replay reads the same sequence.
    """
    check_stream_read(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
    runtime = runtime_here()
    ctx = current_workflow() if current_step() is None else None
    if ctx is not None:
        async for value in _read_checkpointed(ctx, workflow_id, key, offset, timeout_seconds):
            yield value
        return
    while True:
        values, ended = await runtime.forward(
            next_values(runtime, workflow_id, key, offset, timeout_seconds=timeout_seconds)
        )
        for value in values:
            yield value
        offset += len(values)
        if ended:
            return


async def _read_checkpointed(
    ctx: WorkflowContext, workflow_id: str, key: str, offset: int, per_value: float | None
) -> AsyncIterator[Any]:
    runtime = ctx.runtime
    while True:
        function_id = ctx.reserve_function_id()
        recorded = replay_recorded(ctx, function_id, "DBOS.readStream")
        if recorded is NOT_RECORDED:
            ensure_not_cancelled(ctx)
            values, _ = await runtime.forward(  # no value means the stream ended
                next_values(runtime, workflow_id, key, offset, at_most=1, timeout_seconds=per_value)
            )
            recorded = [True, values[0]] if values else [False]
            await record_value(ctx, function_id, "DBOS.readStream", recorded)
        if not recorded[0]:
            return
        yield recorded[1]
        offset += 1


async def _value_at(
    runtime: Runtime, workflow_id: str, key: str, offset: int, wait_seconds: float | None
) -> Any:
    values, _ = await next_values(runtime, workflow_id, key, offset, 1, wait_seconds)
    if not values:  # it ended before ``offset``
        raise DBOSStreamTimeoutError(workflow_id, key, wait_seconds)
    return values[0]


def read_stream_offset(
    workflow_id: str,
    key: str,
    offset: int,
    *,
    polling_interval_sec: float | None = None,
    timeout_seconds: float | None = None,
    shard_key: str | None = None,
) -> Coroutine[Any, Any, Any]:
    """The value at ``offset`` of a workflow's stream ``key``, waiting up to
    ``timeout_seconds`` for it to be written; :class:`DBOSStreamTimeoutError` when it is not,
    or when the stream ends before it. Checkpointed inside a workflow
    (``DBOS.readStreamOffset``)."""
    check_stream_read(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
    runtime = runtime_here()
    return awaited(
        checkpointed(
            "DBOS.readStreamOffset",
            lambda: runtime.forward(_value_at(runtime, workflow_id, key, offset, timeout_seconds)),
        )
    )


def read_stream_sync(
    workflow_id: str,
    key: str,
    *,
    offset: int = 0,
    polling_interval_sec: float | None = None,
    timeout_seconds: float | None = None,
    shard_key: str | None = None,
) -> Generator[Any, None, None]:
    """:func:`read_stream_async` for sync code: each value is awaited through the bridge, so a
    sync workflow's read is checkpointed exactly like an async one's."""
    runtime = runtime_here()
    values = read_stream_async(
        workflow_id,
        key,
        offset=offset,
        polling_interval_sec=polling_interval_sec,
        timeout_seconds=timeout_seconds,
    )
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
