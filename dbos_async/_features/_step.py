"""Running a step inside a workflow: replay a recorded outcome, or run, retry and checkpoint.

A fresh step costs one round trip: its output row is inserted with ``ON CONFLICT DO NOTHING``,
and a conflict means another execution of the same workflow recorded it first, so this one
stops (``DBOSWorkflowConflictIDError``). Replay reads from the outputs the workflow loaded when
it started, never from the database.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from .._core._context import (
    StepStatus,
    WorkflowContext,
    current_step,
    current_workflow,
    enter_step,
    leave_step,
)
from .._core._errors import (
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSMaxStepRetriesExceeded,
    DBOSPatchNondeterminismError,
    DBOSStepTimeoutError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from .._core._tracing import context_attributes, record_step_retry, traced, tracing_enabled
from .._core._validation import check_int, check_number
from .._sysdb._retry import from_system_database
from .._sysdb._workflows import insert_step_output, workflow_status_of

__all__ = [
    "NOT_RECORDED",
    "PATCH_MARKER_PREFIX",
    "RetryPolicy",
    "StepSettings",
    "checkpointed",
    "ensure_not_cancelled",
    "refusal",
    "replay_recorded",
    "run_step",
    "settle_deferred",
    "unexpected_step",
]

logger = logging.getLogger("dbos_async")

T = TypeVar("T")

_MAX_RETRY_INTERVAL = 3600.0
NOT_RECORDED = object()
PATCH_MARKER_PREFIX = "DBOS.patch-"
"""The start of the name of the checkpoint ``DBOS.patch`` records (then the patch's name)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed step runs again: ``max_attempts`` tries, waits growing by ``backoff_rate``."""

    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    should_retry: Callable[[BaseException], bool | Awaitable[bool]] | None = None

    def __post_init__(self) -> None:
        check_number("interval_seconds", self.interval_seconds)
        check_number("backoff_rate", self.backoff_rate)
        check_int("max_attempts", self.max_attempts)
        if self.should_retry is not None and not callable(self.should_retry):
            raise DBOSInvalidArgumentError("should_retry must be callable")

    @property
    def attempts(self) -> int:
        """How many times the step may run."""
        return self.max_attempts if self.retries_allowed else 1

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after the 0-based ``attempt`` failed."""
        return float(min(self.interval_seconds * self.backoff_rate**attempt, _MAX_RETRY_INTERVAL))


@dataclass(frozen=True, slots=True)
class StepSettings:
    """A step's name, retry policy and per-attempt timeout."""

    name: str
    retry: RetryPolicy = RetryPolicy()
    timeout_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_seconds is not None:
            check_number("timeout_seconds", self.timeout_seconds, strict=True)


def replay_recorded(ctx: WorkflowContext, function_id: int, name: str) -> Any:
    """The recorded outcome at ``function_id`` (raising a recorded error), or ``NOT_RECORDED``.

    Raises :class:`DBOSUnexpectedStepError` when another operation was recorded there.
    """
    recorded = ctx.recorded.get(function_id)
    if recorded is None:
        return NOT_RECORDED
    if recorded.function_name != name:
        raise unexpected_step(ctx.workflow_id, function_id, name, recorded.function_name)
    codec = ctx.runtime.codec
    if recorded.error is not None:
        error = codec.loads_exception(recorded.error, recorded.serialization)
        raise error if isinstance(error, BaseException) else Exception(str(error))
    return codec.loads(recorded.output, recorded.serialization)


def unexpected_step(
    workflow_id: str, function_id: int, name: str, recorded_name: str
) -> DBOSException:
    """The error for a replay that meets ``recorded_name`` where the code now runs ``name``:
    :class:`DBOSPatchNondeterminismError` when a patch was recorded there (the code no longer
    checks it), else :class:`DBOSUnexpectedStepError`."""
    if recorded_name.startswith(PATCH_MARKER_PREFIX):
        return DBOSPatchNondeterminismError(
            workflow_id,
            recorded_name.removeprefix(PATCH_MARKER_PREFIX),
            f"this execution took the patched path (recorded at step {function_id}), but the "
            f"code now runs {name} there: keep the DBOS.patch check until no such execution "
            "remains, then replace it with DBOS.deprecate_patch",
        )
    return DBOSUnexpectedStepError(workflow_id, function_id, name, recorded_name)


async def run_step(
    ctx: WorkflowContext,
    function_id: int,
    options: StepSettings,
    invoke: Callable[[], Awaitable[T]],
    *,
    durable_output: bool = False,
) -> T:
    """Run one step of ``ctx``'s workflow at ``function_id`` and checkpoint its outcome.

    ``durable_output``: a value the step returns is recorded elsewhere already (a transaction's
    output, committed with its writes), so its checkpoint is written in the background and the
    workflow goes on at once; its outcome waits for it (:func:`settle_deferred`).
    """
    replayed = replay_recorded(ctx, function_id, options.name)
    if replayed is not NOT_RECORDED:
        return cast(T, replayed)
    ensure_not_cancelled(ctx)
    started = ctx.runtime.clock.now_ms()
    codec = ctx.runtime.codec
    observer = ctx.runtime.step_observer
    if observer is not None:
        observer.step_started(ctx.workflow_id, function_id, options.name)
    single_attempt = options.timeout_seconds is None and not options.retry.retries_allowed
    try:
        if single_attempt and not tracing_enabled():
            # The common step (one attempt, no time limit, no span): only mark the context.
            token = enter_step(StepStatus(function_id, None, None))
            try:
                value = await invoke()
            finally:
                leave_step(token)
        else:
            with traced(options.name, functools.partial(context_attributes, ctx, "step")):
                value = await _attempt(function_id, options, invoke)
    except Exception as error:
        if from_system_database(error):
            raise  # the engine's fault: the workflow runs again, the step is not recorded
        error_bytes = codec.dumps_exception(error)
        await _recorded(ctx, _insert(ctx, function_id, options.name, None, error_bytes, started))
        raise
    del invoke  # (the call and its arguments need not live on while the checkpoint is written)
    output = codec.dumps(value)
    if durable_output and observer is None:
        ctx.defer(_recorded(ctx, _insert(ctx, function_id, options.name, output, None, started)))
    elif not await _insert(ctx, function_id, options.name, output, None, started):
        # (:func:`_recorded`, inline: one coroutine less per step.)
        raise await refusal(ctx)
    if observer is not None:  # told once the checkpoint is committed
        await observer.step_recorded(ctx.workflow_id, function_id, options.name)
    return value


async def settle_deferred(ctx: WorkflowContext, *, raise_errors: bool = True) -> None:
    """Wait for the checkpoints ``ctx`` writes in the background; raise the first failure
    (a refusal, or an error of the system database) unless told not to."""
    while ctx.deferred_checkpoints:
        task = ctx.deferred_checkpoints.pop()
        try:
            await task
        except Exception:
            if raise_errors:
                raise


async def _recorded(ctx: WorkflowContext, insert: Awaitable[bool]) -> None:
    """Wait for a step's checkpoint (``insert``, from :func:`_insert`); raise why it was
    refused, if it was."""
    if not await insert:
        raise await refusal(ctx)


def _insert(
    ctx: WorkflowContext,
    function_id: int,
    name: str,
    output: bytes | None,
    error: bytes | None,
    started: int,
) -> Awaitable[bool]:
    """The group-committed write of a step's outcome: whether it was recorded."""
    return insert_step_output(
        ctx.runtime.db,
        ctx.workflow_id,
        function_id,
        name,
        owner=ctx.runtime.executor_id,
        output=output,
        error=error,
        serialization=ctx.runtime.codec.name,
        started_at_ms=started,
    )


async def refusal(ctx: WorkflowContext) -> BaseException:
    """Why a checkpoint write was refused: the workflow was cancelled, another executor adopted
    it, or another execution recorded this step first."""
    status, owner = await workflow_status_of(ctx.runtime.db, ctx.workflow_id)
    if status == "CANCELLED":
        ctx.cancelled = True
        return DBOSWorkflowCancelledError(f"Workflow {ctx.workflow_id} was cancelled")
    if status == "PENDING" and owner != ctx.runtime.executor_id:
        logger.warning(
            "Workflow %s is now run by executor %s (this executor's heartbeat had lapsed); "
            "stopping its execution here",
            ctx.workflow_id,
            owner,
        )
    return DBOSWorkflowConflictIDError(ctx.workflow_id)


def ensure_not_cancelled(ctx: WorkflowContext) -> None:
    """Stop before starting an operation of a workflow known to be cancelled."""
    if ctx.cancelled:
        raise DBOSWorkflowCancelledError(f"Workflow {ctx.workflow_id} was cancelled")


async def _attempt(
    function_id: int, options: StepSettings, invoke: Callable[[], Awaitable[T]]
) -> T:
    policy = options.retry
    errors: list[BaseException] = []
    for attempt in range(policy.attempts):
        token = enter_step(
            StepStatus(
                function_id,
                attempt + 1 if policy.retries_allowed else None,
                policy.attempts if policy.retries_allowed else None,
            )
        )
        try:
            if options.timeout_seconds is None:
                return await invoke()
            # asyncio.timeout, not wait_for (which on Python 3.11 can swallow a cancellation
            # arriving as the step ends); a TimeoutError of the step's own is its own error.
            deadline = asyncio.timeout(options.timeout_seconds)
            try:
                async with deadline:
                    return await invoke()
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise DBOSStepTimeoutError(options.name, options.timeout_seconds) from None
        except Exception as error:
            if not policy.retries_allowed:
                raise
            if policy.should_retry is not None:
                verdict = policy.should_retry(error)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                if not verdict:
                    raise
            errors.append(error)
            if attempt + 1 < policy.attempts:
                delay = policy.delay_after(attempt)
                logger.warning(
                    "Step %s failed on attempt %d of %d (%r); retrying in %.3gs",
                    options.name,
                    attempt + 1,
                    policy.attempts,
                    error,
                    delay,
                )
                record_step_retry(attempt + 1, error, delay)
                await asyncio.sleep(delay)
        finally:
            leave_step(token)
    raise DBOSMaxStepRetriesExceeded(options.name, policy.attempts, errors)


def checkpointed(name: str, factory: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """Run a DBOS operation (``DBOS.getStatus``, ...) as a step when called inside a workflow.

    The function ID is reserved now, at call time; outside a workflow the operation just runs.
    """
    ctx = current_workflow()
    if ctx is None or current_step() is not None:
        return factory()
    return run_step(ctx, ctx.reserve_function_id(), StepSettings(name), factory)
