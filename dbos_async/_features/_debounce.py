"""Debouncing: many calls within a period run a workflow once, with the last call's inputs.

A debounce of key ``k`` on workflow ``w`` is an enqueue, ``DELAYED`` by the period, whose
deduplication ID is ``f"{w}-{k}"``. While it waits, each further call moves its start to that
call's time plus its period (never past the deadline the first call set with
``debounce_timeout_sec``) and replaces its inputs: one statement (``_sysdb._debounce``), so
concurrent callers are serialized by Postgres and the last to commit wins. Once it leaves
``DELAYED`` the key is free, and the next call starts a new workflow.

Inside a workflow a debounce is a checkpointed step (``DBOS.debounce``), recorded in the same
transaction as the bounce: a replay returns the workflow the first execution reached without
bouncing it again.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import asyncpg

from .._core._errors import (
    DBOSConflictingWorkflowError,
    DBOSInvalidArgumentError,
    DBOSQueueDeduplicatedError,
    DBOSUnexpectedStepError,
)
from .._core._validation import check_id, check_number
from .._sysdb._debounce import (
    CallerRefused,
    StepCheckpoint,
    bounce_or_insert,
    is_workflow_id_taken,
    key_holder,
)
from .._sysdb._workflows import get_workflow, insert_step_output
from ._enqueue import EnqueueSettings, placement_on, queue_settings
from ._step import refusal
from ._workflow import WorkflowCall, workflow_row

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = [
    "DEBOUNCE_STEP",
    "DebounceTarget",
    "check_period",
    "check_timeout",
    "debounce_call",
    "refuse_caller_options",
]

DEBOUNCE_STEP = "DBOS.debounce"
"""The name of the step a debounce records in a calling workflow."""


@dataclasses.dataclass(frozen=True, slots=True)
class DebounceTarget:
    """Where a debouncer's workflows wait: the queue (None: the internal one), the cap on a
    workflow's total wait (None: none), and the application that owns them (None: the
    caller's)."""

    queue_name: str
    timeout_sec: float | None = None
    application_name: str | None = None


def check_period(value: object) -> float:
    """``debounce_period_sec``: a finite number of seconds, at least 0."""
    return check_number("debounce_period_sec", value)


def check_timeout(value: object) -> float | None:
    """``debounce_timeout_sec``: None, or a finite number of seconds greater than 0."""
    if value is None:
        return None
    return check_number("debounce_timeout_sec", value, strict=True)


def refuse_caller_options(settings: EnqueueSettings, *, reject_reuse: bool = False) -> None:
    """Raise :class:`DBOSInvalidArgumentError` for an enqueue option a debounce owns or cannot
    honour: the deduplication ID (the debounce key), the delay (the period), a duplication
    policy, a priority, a partition key, or ``workflow_id_reuse_policy="reject"``."""
    refused = [
        name
        for name, is_set in (
            ("deduplication_id", settings.deduplication_id is not None),
            ("delay_seconds", settings.delay_seconds is not None),
            ("priority", settings.priority is not None),
            ("queue_partition_key", settings.queue_partition_key is not None),
            ("duplication_policy='return-existing'", settings.duplication_policy != "reject"),
            ("workflow_id_reuse_policy='reject'", reject_reuse),
        )
        if is_set
    ]
    if refused:
        raise DBOSInvalidArgumentError(
            f"A debounced workflow cannot be enqueued with {', '.join(refused)}: the debounce "
            "key is its deduplication ID, the period its delay, and priorities and partitions "
            "do not apply to it"
        )


async def debounce_call(
    runtime: Runtime,
    call: WorkflowCall,
    key: str,
    period_sec: float,
    target: DebounceTarget,
    options: EnqueueSettings,
) -> str:
    """Debounce ``call`` under ``key`` for ``period_sec``: bounce the workflow waiting under the
    key, or enqueue ``call`` to wait; return the workflow's ID.

    ``options`` are the caller's other enqueue options (version, application). Raises
    :class:`DBOSQueueDeduplicatedError` when the key is held by a workflow that cannot be
    bounced (an ordinary enqueue with that deduplication ID, another workflow function's, or
    another application's).
    """
    recorded = _replayed(call)
    if recorded is not None:
        return recorded
    check_id("debounce_key", key)
    queue_name = target.queue_name
    deduplication_id = f"{call.invocation.info.name}-{key}"
    settings = await queue_settings(runtime, queue_name)
    now = runtime.clock.now_ms()
    placement = placement_on(
        queue_name,
        settings,
        dataclasses.replace(
            options,
            deduplication_id=deduplication_id,
            application_name=target.application_name or options.application_name,
        ),
        now_ms=now,
    )
    deadline = now + int(target.timeout_sec * 1000) if target.timeout_sec is not None else None
    placement = dataclasses.replace(placement, delay_until_epoch_ms=now + int(period_sec * 1000))
    # Serialized here: inputs that cannot be recorded fail before anything is written.
    row = workflow_row(runtime, call, placement)
    parent, function_id = call.parent, call.parent_function_id
    checkpoint = None
    if parent is not None and function_id is not None:
        checkpoint = StepCheckpoint(
            parent.workflow_id, function_id, DEBOUNCE_STEP, runtime.executor_id
        )
    while True:
        try:
            bounce = await bounce_or_insert(runtime.db, row, deadline, checkpoint)
        except CallerRefused:
            assert parent is not None
            raise await refusal(parent) from None
        except asyncpg.UniqueViolationError as error:
            if not is_workflow_id_taken(error):
                raise
            return await _existing(runtime, call, checkpoint)
        if bounce is not None:
            if bounce.announce:
                runtime.dispatcher.announce(
                    queue_name, delayed_until_ms=bounce.delay_until_epoch_ms
                )
            return bounce.workflow_id
        holder = await key_holder(runtime.db, queue_name, deduplication_id)
        if holder is not None:
            conflict = DBOSQueueDeduplicatedError(holder, queue_name, deduplication_id)
            if checkpoint is not None:
                await _record(
                    runtime, call, checkpoint, None, runtime.codec.dumps_exception(conflict)
                )
            raise conflict
        # The holder left its key between the two statements: try again.


def _replayed(call: WorkflowCall) -> str | None:
    """The workflow a replayed debounce reached (or its recorded error, raised)."""
    parent, function_id = call.parent, call.parent_function_id
    if parent is None or function_id is None:
        return None
    recorded = parent.recorded.get(function_id)
    if recorded is None:
        return None
    if recorded.function_name != DEBOUNCE_STEP:
        raise DBOSUnexpectedStepError(
            parent.workflow_id, function_id, DEBOUNCE_STEP, recorded.function_name
        )
    if recorded.error is not None:
        error = parent.runtime.codec.loads_exception(recorded.error, recorded.serialization)
        raise error if isinstance(error, BaseException) else Exception(str(error))
    assert recorded.child_workflow_id is not None
    return recorded.child_workflow_id


async def _existing(runtime: Runtime, call: WorkflowCall, checkpoint: StepCheckpoint | None) -> str:
    """A debounce given a workflow ID (``SetWorkflowID``) that exists: a handle on that
    workflow if it is the same function, as a start with that ID would give."""
    row = await get_workflow(runtime.db, call.workflow_id)
    name = call.invocation.info.name
    if row is None or row["name"] != name:
        raise DBOSConflictingWorkflowError(
            call.workflow_id,
            f"it was started as {row['name'] if row else None!r}; it cannot debounce {name!r}",
        )
    if checkpoint is not None:
        await _record(runtime, call, checkpoint, call.workflow_id, None)
    return call.workflow_id


async def _record(
    runtime: Runtime,
    call: WorkflowCall,
    checkpoint: StepCheckpoint,
    child_id: str | None,
    error: bytes | None,
) -> None:
    """Record the debounce's outcome in the calling workflow (when nothing else was written)."""
    recorded = await insert_step_output(
        runtime.db,
        checkpoint.workflow_id,
        checkpoint.function_id,
        checkpoint.function_name,
        owner=checkpoint.owner,
        output=None,
        error=error,
        serialization=runtime.codec.name if error is not None else None,
        child_workflow_id=child_id,
    )
    if not recorded and call.parent is not None:
        raise await refusal(call.parent)
