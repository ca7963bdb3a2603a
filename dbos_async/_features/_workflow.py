"""Starting, executing, awaiting and recovering workflows.

A start is one round trip (insert the row, ``ON CONFLICT DO NOTHING``); the end is one more
(``UPDATE ... WHERE status = 'PENDING'`` with a NOTIFY). A workflow runs as an asyncio task on
the runtime's loop, so a second caller with the same ID joins that task, and the caller's own
cancellation never abandons a workflow halfway.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .._core._clock import Clock, ClockTimer
from .._core._context import (
    WorkflowContext,
    current_auth,
    current_request,
    current_step,
    current_workflow,
    enter_workflow,
    take_next_workflow_id,
    workflow_attributes,
    workflow_timeout_override,
)
from .._core._errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
    DBOSWorkflowIDInUseError,
)
from .._core._registry import WorkflowInfo
from .._core._request import Request
from .._core._roles import Auth, authorize
from .._core._runtime import current_runtime_or_none
from .._core._tracing import (
    TRACE_CONTEXT_ATTRIBUTE,
    caller_trace_context,
    context_attributes,
    trace_context_to,
    traced,
)
from .._sysdb._notify import WORKFLOW_DONE
from .._sysdb._retry import Backoff, from_system_database, retry_until_available
from .._sysdb._workflows import (
    NewWorkflow,
    complete_workflow,
    get_workflow,
    insert_step_output,
    insert_workflow,
    load_step_outputs,
    mark_awaited,
)
from ._step import refusal, settle_deferred, unexpected_step

if TYPE_CHECKING:
    import asyncpg
    from opentelemetry.context import Context as TraceContext

    from .._core._runtime import Runtime

__all__ = [
    "Invocation",
    "QueuePlacement",
    "WorkflowCall",
    "launch",
    "new_workflow_id",
    "prepare_call",
    "record_child",
    "finish",
    "record_start",
    "result_of",
    "start_workflow",
    "wait_result",
    "workflow_row",
]

logger = logging.getLogger("dbos_async")


@dataclass(slots=True)
class Invocation:
    """A workflow function and what to call it with (``bound`` is its instance or class).

    (Not frozen: one is made per workflow started, and a frozen one costs three times as much
    to make.)
    """

    info: WorkflowInfo
    bound: object | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    identity: tuple[str | None, str | None] | None = None
    """The (class name, configured instance name) to record, when given by name (an enqueue
    by options) rather than found from ``bound``."""

    def run(self, runtime: Runtime, workflow_id: str) -> Awaitable[Any]:
        """Run the body: on the loop if async, on the workflow pool if sync."""
        args = (self.bound, *self.args) if self.bound is not None else self.args
        if self.info.is_async:
            return cast(Awaitable[Any], self.info.func(*args, **self.kwargs))
        return runtime.run_workflow_body(workflow_id, self.info.func, *args, **self.kwargs)


@dataclass(slots=True)
class WorkflowCall:
    """A workflow invocation, resolved when the function is *called*.

    Resolving at call time (not when the coroutine first runs) is what keeps function IDs in
    program order under ``asyncio.gather``.
    """

    invocation: Invocation
    workflow_id: str
    parent: WorkflowContext | None
    parent_function_id: int | None
    auth: Auth
    timeout_ms: int | None
    deadline_epoch_ms: int | None
    request: Request | None = None
    trace_parent: TraceContext | None = None
    attributes: dict[str, Any] | None = None
    """Set by an enclosing ``SetWorkflowAttributes``."""
    reject_existing: bool = False
    """Raise :class:`DBOSWorkflowIDInUseError` if the workflow ID exists (``SetWorkflowID``'s
    ``workflow_id_reuse_policy="reject"``)."""
    serialization: str | None = None
    """The format its row records (None: the configured one); the workflow's declared one
    unless the enqueue names another."""

    def context(self, runtime: Runtime) -> WorkflowContext:
        """The context of this call's workflow, run directly here."""
        return WorkflowContext(
            runtime=runtime,
            workflow_id=self.workflow_id,
            name=self.invocation.info.name,
            auth=self.auth,
            deadline_epoch_ms=self.deadline_epoch_ms,
            request=self.request,
            trace_parent=self.trace_parent,
            serialization=self.serialization,
        )


def prepare_call(
    info: WorkflowInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    identity: tuple[str | None, str | None] | None = None,
) -> WorkflowCall:
    """Reserve the parent's function ID and choose the workflow ID, synchronously.

    With ``identity`` (class name, instance name) the arguments hold no instance or class:
    the workflow's method is named, for whichever process runs it. Raises
    :class:`DBOSNotAuthorizedError` when the caller lacks the workflow's required roles.
    """
    auth = authorize(info.roles, current_auth(), info.name)
    parent = current_workflow() if current_step() is None else None
    function_id = parent.reserve_function_id() if parent is not None else None
    assigned = take_next_workflow_id()
    if assigned is not None:
        workflow_id = assigned.workflow_id
    elif parent is not None:
        workflow_id = f"{parent.workflow_id}-{function_id}"
    else:
        workflow_id = new_workflow_id()
    bound: object | None = None
    if info.kind in ("instance", "class") and identity is None:
        bound, args = args[0], args[1:]
    is_set, seconds = workflow_timeout_override()
    timeout_ms = int(seconds * 1000) if is_set and seconds is not None else None
    if is_set:
        runtime = current_runtime_or_none()
        clock = runtime.clock if runtime is not None else Clock()  # the wall clock
        deadline = clock.now_ms() + timeout_ms if timeout_ms is not None else None
    else:
        deadline = parent.deadline_epoch_ms if parent is not None else None
    return WorkflowCall(
        invocation=Invocation(info, bound, args, kwargs, identity),
        workflow_id=workflow_id,
        parent=parent,
        parent_function_id=function_id,
        auth=auth,
        timeout_ms=timeout_ms,
        deadline_epoch_ms=deadline,
        request=current_request(),
        trace_parent=caller_trace_context(),
        reject_existing=assigned is not None and assigned.reuse_policy == "reject",
        attributes=workflow_attributes(),
        serialization=info.serialization,
    )


def new_workflow_id() -> str:
    """A time-ordered (version 7) UUID string: the wall clock's milliseconds, then 74 random
    bits (every workflow started without an ID takes one).

    IDs made later sort later, so a new workflow's row and its steps land on the newest pages
    of their tables' primary keys, which stay in memory; a random ID lands anywhere in keys
    that grow with history, each insert on a page likely read from disk.
    """
    digits = f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
    return (
        f"{digits[:8]}-{digits[8:12]}-7{digits[13:16]}-"
        f"{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:]}"
    )


# The RFC 4122 variant (binary 10xx) in the top bits of the 17th hex digit, keeping its two
# random low bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _identity(invocation: Invocation) -> tuple[str | None, str | None]:
    """The (class_name, config_name) recorded for a method workflow."""
    if invocation.identity is not None:
        return invocation.identity
    config_name = None
    if invocation.info.kind == "instance":
        config_name = getattr(invocation.bound, "config_name", None)
    return invocation.info.class_name, config_name


def _replay_child_id(call: WorkflowCall) -> str | None:
    """The child ID the parent recorded at this function ID, when replaying."""
    parent, function_id = call.parent, call.parent_function_id
    if parent is None or function_id is None:
        return None
    recorded = parent.recorded.get(function_id)
    if recorded is None:
        return None
    name = call.invocation.info.name
    if recorded.function_name != name:
        raise unexpected_step(parent.workflow_id, function_id, name, recorded.function_name)
    return recorded.child_workflow_id


@dataclass(frozen=True, slots=True)
class QueuePlacement:
    """Where and how an enqueued workflow waits: its queue and the enqueue options."""

    queue_name: str
    priority: int = 0
    deduplication_id: str | None = None
    partition_key: str | None = None
    delay_until_epoch_ms: int | None = None
    app_version: str | None = None
    pin_version: bool = True
    """Without ``app_version``: run on this process's version (else on the latest one)."""
    application_name: str | None = None
    """The application that owns the workflow (None: this process's)."""
    schedule_name: str | None = None
    """The schedule whose tick this workflow runs."""


async def record_start(
    runtime: Runtime, call: WorkflowCall, placement: QueuePlacement | None = None
) -> bool:
    """Write the workflow's row (and its parent's record of it); False if it already existed.

    Raises ``asyncpg.UniqueViolationError`` when ``placement``'s deduplication ID is taken.
    """
    replayed_id = _replay_child_id(call)
    if replayed_id is not None:
        call.workflow_id = replayed_id
    # Serialize first: a value that cannot be recorded fails before any row is written.
    row = workflow_row(runtime, call, placement)
    if call.workflow_id in runtime.active:
        if call.reject_existing and replayed_id is None:
            raise DBOSWorkflowIDInUseError(call.workflow_id, "PENDING", row.name)
        if call.parent is not None:
            await record_child(runtime, call, call.workflow_id, replayed=replayed_id is not None)
        return False
    class_name, config_name = row.class_name, row.config_name
    inserted = await insert_workflow(runtime.db, row)
    if not inserted and replayed_id is None:
        # (A replayed child ID may name a deduplicated enqueue's existing workflow.)
        await _check_same_function(runtime, call, class_name, config_name)
    # The child's row first, then the parent's record of it: a crash in between replays to the
    # same deterministic child ID, and a deduplicated enqueue leaves no record behind.
    if call.parent is not None:
        await record_child(runtime, call, call.workflow_id, replayed=replayed_id is not None)
    return inserted


def workflow_row(
    runtime: Runtime, call: WorkflowCall, placement: QueuePlacement | None = None
) -> NewWorkflow:
    """The row that records ``call`` (on ``placement``'s queue, if given); its inputs are
    serialized here, so a value that cannot be recorded fails before anything is written."""
    codec = runtime.codec
    invocation = call.invocation
    inputs = codec.dumps_inputs(invocation.args, invocation.kwargs, call.serialization)
    class_name, config_name = _identity(invocation)
    queued = placement is not None
    delayed = placement is not None and placement.delay_until_epoch_ms is not None
    return NewWorkflow(
        workflow_id=call.workflow_id,
        name=invocation.info.name,
        class_name=class_name,
        config_name=config_name,
        inputs=inputs,
        serialization=codec.name_of(call.serialization),
        executor_id=runtime.executor_id,
        application_version=_version_for(runtime, placement),
        authenticated_user=call.auth.user,
        assumed_role=call.auth.assumed_role,
        authenticated_roles=list(call.auth.roles) if call.auth.roles else None,
        parent_workflow_id=call.parent.workflow_id if call.parent is not None else None,
        timeout_ms=call.timeout_ms,
        # A queued workflow's own timeout starts when it is dequeued.
        deadline_epoch_ms=None
        if queued and call.timeout_ms is not None
        else call.deadline_epoch_ms,
        status="DELAYED" if delayed else "ENQUEUED" if queued else "PENDING",
        queue_name=placement.queue_name if placement else None,
        priority=placement.priority if placement else 0,
        deduplication_id=placement.deduplication_id if placement else None,
        queue_partition_key=placement.partition_key if placement else None,
        delay_until_epoch_ms=placement.delay_until_epoch_ms if placement else None,
        attributes=_stored_attributes(call),
        schedule_name=placement.schedule_name if placement else None,
        application_name=(placement.application_name if placement else None)
        or runtime.application_name,
    )


def _version_for(runtime: Runtime, placement: QueuePlacement | None) -> str | None:
    """The application version a new workflow may run on (None: the latest one)."""
    if placement is None:
        return runtime.application_version
    if placement.app_version is not None or not placement.pin_version:
        return placement.app_version
    return runtime.application_version


def _stored_attributes(call: WorkflowCall) -> str | None:
    """The JSON attributes stored with the workflow: those of an enclosing
    ``SetWorkflowAttributes``, and the caller's trace context, if traced."""
    attributes = dict(call.attributes or {})
    carrier = trace_context_to(call.trace_parent)
    if carrier:
        attributes[TRACE_CONTEXT_ATTRIBUTE] = carrier
    return json.dumps(attributes) if attributes else None


async def record_child(
    runtime: Runtime, call: WorkflowCall, child_id: str, *, replayed: bool = False
) -> None:
    """Record in the parent (if any) that this call started ``child_id``."""
    parent, function_id = call.parent, call.parent_function_id
    if parent is None or function_id is None or replayed:
        return
    recorded = await insert_step_output(
        runtime.db,
        parent.workflow_id,
        function_id,
        call.invocation.info.name,
        owner=runtime.executor_id,
        output=None,
        error=None,
        serialization=None,
        child_workflow_id=child_id,
    )
    if not recorded:
        raise await refusal(parent)


async def start_workflow(runtime: Runtime, call: WorkflowCall) -> str:
    """Record and start the workflow, or attach to the one already recorded under its ID."""
    # (Already running here if recovery found it first, while this start waited out an outage.)
    if await record_start(runtime, call) and call.workflow_id not in runtime.active:
        launch(runtime, call.context(runtime), call.invocation)
    return call.workflow_id


async def _check_same_function(
    runtime: Runtime, call: WorkflowCall, class_name: str | None, config_name: str | None
) -> None:
    row = await get_workflow(runtime.db, call.workflow_id)
    if row is None:
        return
    if call.reject_existing:
        raise DBOSWorkflowIDInUseError(call.workflow_id, row["status"], row["name"])
    recorded = (row["name"], row["class_name"], row["config_name"])
    name = call.invocation.info.name
    if recorded != (name, class_name, config_name):
        raise DBOSConflictingWorkflowError(
            call.workflow_id, f"it was started as {recorded[0]!r} and is now called as {name!r}"
        )


def launch(runtime: Runtime, ctx: WorkflowContext, invocation: Invocation) -> asyncio.Task[Any]:
    loop = asyncio.get_running_loop()
    task = loop.create_task(
        _execute(runtime, ctx, invocation), name=f"dbos-workflow-{ctx.workflow_id}"
    )
    runtime.active[ctx.workflow_id] = task
    runtime.contexts[ctx.workflow_id] = ctx
    deadline = None
    if ctx.deadline_epoch_ms is not None:
        deadline = runtime.clock.call_at(
            ctx.deadline_epoch_ms / 1000, functools.partial(_time_out, runtime, ctx.workflow_id)
        )
    # (In an empty context: a copy of the caller's, kept as long as the task, is not needed.)
    task.add_done_callback(functools.partial(_forget, runtime, ctx, deadline), context=_EMPTY)
    return task


_EMPTY = contextvars.Context()


def _time_out(runtime: Runtime, workflow_id: str) -> None:
    """A workflow's deadline passed: cancel it, as DBOS does."""
    logger.info("Workflow %s reached its deadline; cancelling it", workflow_id)
    runtime.background(runtime.cancel([workflow_id]))


def _forget(
    runtime: Runtime,
    ctx: WorkflowContext,
    deadline: ClockTimer | None,
    task: asyncio.Task[Any],
) -> None:
    if deadline is not None:
        deadline.cancel()
    for outcome in ctx.outcome_waiters:
        _copy_outcome(outcome, task)
    ctx.outcome_waiters.clear()
    if runtime.active.get(ctx.workflow_id) is task:
        del runtime.active[ctx.workflow_id]
        del runtime.contexts[ctx.workflow_id]
        runtime.code_ended(ctx.workflow_id)
    if not task.cancelled():
        task.exception()  # the outcome is in the database; don't warn about it here


async def _execute(runtime: Runtime, ctx: WorkflowContext, invocation: Invocation) -> Any:
    """Run a workflow to its recorded outcome.

    An outage of the system database pauses the workflow (every statement waits for the
    database); any other error of the system database is the engine's fault, never the
    workflow's outcome: the workflow stays PENDING and runs again from its recorded steps, after
    a growing delay, as a recovery would.
    """
    retry_until_available()
    faults = 0
    while True:
        try:
            return await _execute_once(runtime, ctx, invocation)
        except asyncio.CancelledError:
            # Cancelled wherever it was, its code or the recording of its outcome included.
            if not ctx.cancelled:
                raise  # the runtime is stopping: the workflow stays PENDING for recovery
            return await _cancelled_outcome(runtime, ctx)
        except Exception as error:
            if not from_system_database(error) or runtime.stopping:
                raise
            faults += 1
            delay = min(2.0 ** (faults - 1), _MAX_FAULT_DELAY)
            logger.error(
                "Workflow %s met an error of the system database; it stays PENDING and runs "
                "again from its last recorded step in %.0fs",
                ctx.workflow_id,
                delay,
                exc_info=error,
            )
            try:
                await asyncio.sleep(delay)
                ctx = await _restarted(runtime, ctx)
            except asyncio.CancelledError:
                if not ctx.cancelled:
                    raise
                return await _cancelled_outcome(runtime, ctx)


async def _cancelled_outcome(runtime: Runtime, ctx: WorkflowContext) -> Any:
    """The outcome recorded for ``ctx``'s workflow, whose task was cancelled because the
    workflow was (marked CANCELLED, or taken over by another execution)."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()
    return await _wait_recorded(runtime, ctx.workflow_id)


_MAX_FAULT_DELAY = 60.0


async def _restarted(runtime: Runtime, ctx: WorkflowContext) -> WorkflowContext:
    """A fresh context to run ``ctx``'s workflow again, from the steps recorded so far (the
    checkpoints the last run was still writing in the background included: read before they
    commit, a step would run again and then find its checkpoint taken)."""
    await settle_deferred(ctx, raise_errors=False)
    fresh = dataclasses.replace(
        ctx,
        recorded=await load_step_outputs(runtime.db, ctx.workflow_id),
        blocking_calls=None,
        deferred_checkpoints=None,
        _next_id=1,
    )
    if runtime.contexts.get(ctx.workflow_id) is ctx:
        runtime.contexts[ctx.workflow_id] = fresh
    return fresh


async def _execute_once(runtime: Runtime, ctx: WorkflowContext, invocation: Invocation) -> Any:
    enter_workflow(ctx)
    codec = runtime.codec
    try:
        # (A partial, not a lambda: a closure would keep ``ctx`` in a cell for the whole run.)
        with traced(
            ctx.name, functools.partial(context_attributes, ctx, "workflow"), ctx.trace_parent
        ):
            try:
                result = await invocation.run(runtime, ctx.workflow_id)
            finally:
                # Its queue slot is free from here (a run again after an error of the system
                # database, rare as it is, runs outside its queue's count).
                runtime.function_returned(ctx.workflow_id)
        if ctx.deferred_checkpoints:
            await settle_deferred(ctx)
        output = codec.dumps(result, ctx.serialization)
    except (DBOSWorkflowConflictIDError, DBOSWorkflowCancelledError):
        # Another execution (or a cancellation) owns the outcome; report what it records.
        return await _wait_recorded(runtime, ctx.workflow_id)
    except Exception as error:
        if from_system_database(error):
            raise  # the engine's fault, not the workflow's outcome
        await settle_deferred(ctx, raise_errors=False)
        if isinstance(error, DBOSSerializationError):
            logger.error("Workflow %s returned a value that cannot be recorded", ctx.workflow_id)
        error_bytes = codec.dumps_exception(error, ctx.serialization)
        if await finish(
            runtime, ctx.workflow_id, ctx.queue_name, "ERROR", None, error_bytes, ran=True
        ):
            raise
        return await _wait_recorded(runtime, ctx.workflow_id)
    if await finish(runtime, ctx.workflow_id, ctx.queue_name, "SUCCESS", output, None, ran=True):
        return result
    return await _wait_recorded(runtime, ctx.workflow_id)


async def finish(
    runtime: Runtime,
    workflow_id: str,
    queue_name: str | None,
    status: str,
    output: bytes | None,
    error: bytes | None,
    *,
    ran: bool = False,
) -> bool:
    """Record the outcome and wake local waiters; False if another outcome was recorded first.

    ``ran``: the workflow's code ran here and returned, so its queue slot is free already; the
    dispatcher then records the outcome with its next claim from that queue.
    """
    dispatcher = runtime.dispatcher
    if ran and queue_name is not None and dispatcher.records_outcomes_of(queue_name):
        recorded = await dispatcher.record_outcome(queue_name, workflow_id, status, output, error)
    else:
        recorded = await complete_workflow(
            runtime.db, workflow_id, status, output, error, owner=runtime.executor_id
        )
    if not recorded:
        return False
    runtime.notifier.notify_local(WORKFLOW_DONE, workflow_id)
    settings = runtime.queues.settings(queue_name) if queue_name else None
    if queue_name is not None and settings is not None and settings.shares_limits:
        # A shared slot is free again: other processes' dispatchers may claim it.
        runtime.dispatcher.announce(queue_name)
    return True


def _outcome(runtime: Runtime, row: asyncpg.Record) -> Any:
    status = row["status"]
    fmt = row["serialization"]
    if status == "SUCCESS":
        return runtime.codec.loads(row["output"], fmt)
    if status == "ERROR":
        error = runtime.codec.loads_exception(row["error"], fmt)
        if isinstance(error, BaseException):
            raise error
        raise DBOSException(f"Workflow {row['workflow_uuid']} failed: {error!r}")
    if status == "CANCELLED":
        raise DBOSAwaitedWorkflowCancelledError(row["workflow_uuid"])
    if status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
        raise DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(row["workflow_uuid"])
    return _NOT_DONE


_NOT_DONE = object()


async def _wait_recorded(runtime: Runtime, workflow_id: str) -> Any:
    """Wait until the database records an outcome for ``workflow_id`` and return it."""
    async with runtime.notifier.subscribe(WORKFLOW_DONE, workflow_id) as wake:
        busy = Backoff(first=0.001, cap=0.05)
        while True:
            row = await get_workflow(runtime.db, workflow_id)
            if row is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
            outcome = _outcome(runtime, row)
            if outcome is not _NOT_DONE:
                return outcome
            task = runtime.active.get(workflow_id)
            if task is not None and task is not asyncio.current_task():
                return await _outcome_of(runtime, workflow_id, task)
            if not row["awaited"]:
                if not await mark_awaited(runtime.db, workflow_id):
                    # Held for a moment (being claimed or completed): read again shortly.
                    await asyncio.sleep(busy.next_delay())
                continue  # it may have completed before the flag was set: read again
            await wake.wait(None)  # the hub's sweep re-checks if a notification is lost


async def wait_result(runtime: Runtime, workflow_id: str) -> Any:
    """The outcome of ``workflow_id``: its return value, or its error raised."""
    return await result_of(runtime, workflow_id)


def result_of(runtime: Runtime, workflow_id: str) -> Coroutine[Any, Any, Any]:
    """:func:`wait_result`'s coroutine, for a caller on the engine's loop (one coroutine less
    alive while it waits)."""
    task = runtime.active.get(workflow_id)
    if task is not None:
        return _outcome_of(runtime, workflow_id, task)
    return _wait_recorded(runtime, workflow_id)


async def _outcome_of(runtime: Runtime, workflow_id: str, task: asyncio.Task[Any]) -> Any:
    """The outcome of ``task``, the one running ``workflow_id`` here; cancelling the caller
    stops its wait, never the workflow's task.

    What ``asyncio.shield`` does, for less: the task's one done-callback (:func:`_forget`)
    fills each waiter's future.
    """
    if task.done():
        return task.result()
    waiters = cast(WorkflowContext, runtime.contexts[workflow_id]).outcome_waiters
    outcome = task.get_loop().create_future()
    waiters.append(outcome)
    try:
        return await outcome
    except asyncio.CancelledError:
        if outcome in waiters:
            waiters.remove(outcome)
        raise


def _copy_outcome(outcome: asyncio.Future[Any], task: asyncio.Task[Any]) -> None:
    if outcome.done():
        return
    if task.cancelled():
        outcome.cancel()
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())
