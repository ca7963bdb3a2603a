"""Durable queues: ``Queue``, ``SetEnqueueOptions`` and enqueueing.

Enqueueing writes an ``ENQUEUED`` (or ``DELAYED``) row and wakes dispatchers: this process's
directly, the others through a coalesced NOTIFY. Which process runs the workflow, and when, is
the dispatcher's business (``_dispatcher.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import asyncpg

from .._core._context import _ContextSetter, block_on, runtime_here
from .._core._errors import DBOSInvalidArgumentError, DBOSQueueDeduplicatedError
from .._core._registry import default_registry
from .._core._runtime import Runtime
from .._core._sync import awaited
from .._core._validation import check_id, check_int, check_number
from .._sysdb._queues import deduplicated_workflow
from .._sysdb._workflows import now_ms
from ._decorators import bound_arguments, workflow_info
from ._handles import WorkflowHandle, WorkflowHandleAsync
from ._workflow import QueuePlacement, WorkflowCall, prepare_call, record_child, record_start

__all__ = ["INTERNAL_QUEUE", "Limiter", "Queue", "SetEnqueueOptions", "enqueue"]

INTERNAL_QUEUE = "_dbos_internal_queue"


class Limiter(TypedDict):
    """A rate limit: at most ``limit`` workflows started in any ``period`` seconds."""

    limit: int
    period: float


class Queue:
    """A named durable queue with flow control that holds across every process.

    ``concurrency`` caps how many of its workflows run at once in all processes together,
    ``worker_concurrency`` how many run in this process, and ``limiter`` how many start in any
    window of ``period`` seconds. With ``partition_queue=True`` every limit applies to each
    ``queue_partition_key`` separately. Priorities are always honoured (lower runs first).
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: Limiter | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ) -> None:
        self.name = check_id("A queue name", name)
        self.concurrency = _optional_positive_int("concurrency", concurrency)
        self.worker_concurrency = _optional_positive_int("worker_concurrency", worker_concurrency)
        if (
            self.concurrency is not None
            and self.worker_concurrency is not None
            and self.worker_concurrency > self.concurrency
        ):
            raise DBOSInvalidArgumentError(
                f"worker_concurrency ({worker_concurrency}) exceeds concurrency ({concurrency})"
            )
        self.limiter = _check_limiter(limiter)
        self.priority_enabled = priority_enabled
        self.partition_queue = partition_queue
        default_registry.add_queue(self)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def enqueue_async(
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Enqueue ``func`` (a workflow) with these arguments; return a handle on it."""
        runtime = runtime_here()
        call = prepare_call(workflow_info(func), bound_arguments(func, args), kwargs)
        placement = _placement(self)
        return awaited(_enqueued(runtime, call, placement))

    def enqueue(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue ``func`` (a workflow) with these arguments; return a handle on it."""
        runtime = runtime_here()
        handle = block_on(
            runtime, lambda: self.enqueue_async(func, *args, **kwargs), operation="Queue.enqueue"
        )
        return WorkflowHandle(runtime, handle.workflow_id)


def _optional_positive_int(name: str, value: object) -> int | None:
    return None if value is None else check_int(name, value)


def _check_limiter(limiter: object) -> Limiter | None:
    if limiter is None:
        return None
    if not isinstance(limiter, dict) or set(limiter) != {"limit", "period"}:
        raise DBOSInvalidArgumentError(
            f'limiter must be {{"limit": int, "period": seconds}}, got {limiter!r}'
        )
    limit = check_int("limiter limit", limiter["limit"])
    period = check_number("limiter period", limiter["period"], strict=True)
    return Limiter(limit=limit, period=period)


DuplicationPolicy = Literal["reject", "return-existing"]


@dataclass(frozen=True, slots=True)
class _EnqueueOptions:
    priority: int | None = None
    deduplication_id: str | None = None
    queue_partition_key: str | None = None
    delay_seconds: float | None = None
    app_version: str | None = None
    duplication_policy: DuplicationPolicy = "reject"


_enqueue_options: ContextVar[_EnqueueOptions | None] = ContextVar(
    "dbos_enqueue_options", default=None
)


class SetEnqueueOptions(_ContextSetter["_EnqueueOptions | None"]):
    """Options for workflows enqueued in the block: priority, deduplication, partition, delay."""

    _var = _enqueue_options

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        app_version: str | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
        duplication_policy: DuplicationPolicy = "reject",
    ) -> None:
        if priority is not None:
            check_int("priority", priority, maximum=2**31 - 1)
        if delay_seconds is not None:
            check_number("delay_seconds", delay_seconds)
        if duplication_policy not in ("reject", "return-existing"):
            raise DBOSInvalidArgumentError(f"Unknown duplication_policy {duplication_policy!r}")
        if duplication_policy == "return-existing" and deduplication_id is None:
            raise DBOSInvalidArgumentError(
                "duplication_policy='return-existing' needs a deduplication_id"
            )
        super().__init__(
            _EnqueueOptions(
                priority,
                deduplication_id,
                queue_partition_key,
                delay_seconds,
                app_version,
                duplication_policy,
            )
        )


def _placement(queue: Queue) -> tuple[QueuePlacement, DuplicationPolicy]:
    options = _enqueue_options.get() or _EnqueueOptions()
    if queue.partition_queue and options.queue_partition_key is None:
        raise DBOSInvalidArgumentError(
            f"Queue {queue.name!r} is partitioned: set queue_partition_key with SetEnqueueOptions"
        )
    if not queue.partition_queue and options.queue_partition_key is not None:
        raise DBOSInvalidArgumentError(f"Queue {queue.name!r} is not partitioned")
    delay_until = now_ms() + int(options.delay_seconds * 1000) if options.delay_seconds else None
    placement = QueuePlacement(
        queue_name=queue.name,
        priority=options.priority or 0,
        deduplication_id=options.deduplication_id,
        partition_key=options.queue_partition_key,
        delay_until_epoch_ms=delay_until,
        app_version=options.app_version,
    )
    return placement, options.duplication_policy


async def enqueue(
    runtime: Runtime, call: WorkflowCall, placement: QueuePlacement, policy: DuplicationPolicy
) -> str:
    """Record ``call`` on its queue and wake the dispatchers; return the workflow ID."""
    try:
        await record_start(runtime, call, placement)
    except asyncpg.UniqueViolationError:
        existing = await deduplicated_workflow(
            runtime.db, placement.queue_name, placement.deduplication_id or ""
        )
        if policy == "return-existing" and existing is not None:
            await record_child(runtime, call, str(existing))
            return str(existing)
        raise DBOSQueueDeduplicatedError(
            call.workflow_id, placement.queue_name, placement.deduplication_id or ""
        ) from None
    runtime.dispatcher.announce(
        placement.queue_name, delayed_until_ms=placement.delay_until_epoch_ms
    )
    return call.workflow_id


async def _enqueued(
    runtime: Runtime, call: WorkflowCall, placement: tuple[QueuePlacement, DuplicationPolicy]
) -> WorkflowHandleAsync[Any]:
    workflow_id = await runtime.forward(enqueue(runtime, call, *placement))
    return WorkflowHandleAsync(runtime, workflow_id)
