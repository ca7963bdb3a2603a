"""Enqueueing: the options of an enqueue, their checks against the queue, and the write.

Enqueueing writes an ``ENQUEUED`` (or ``DELAYED``) row and wakes dispatchers: this process's
directly, the others through a coalesced NOTIFY. Which process runs the workflow, and when, is
the dispatcher's business (``_dispatcher.py``). Every check (the queue exists, the partition key
matches its partitioning, no deduplication on a partitioned queue) comes before the write.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from .._core._context import _ContextSetter
from .._core._errors import (
    DBOSInvalidArgumentError,
    DBOSQueueDeduplicatedError,
    DBOSQueueNotFoundError,
)
from .._core._queue_settings import QueueSettings
from .._core._runtime import Runtime
from .._core._validation import check_id, check_int, check_number
from .._sysdb._declarations import declared_queue
from .._sysdb._queues import deduplicated_workflow
from .._sysdb._workflows import NewWorkflow
from ._handles import WorkflowHandleAsync
from ._queue_store import reload_queue, settings_from_row
from ._workflow import QueuePlacement, WorkflowCall, record_child, record_start, workflow_row

__all__ = [
    "INTERNAL_QUEUE",
    "DuplicationPolicy",
    "EnqueueSettings",
    "SetEnqueueOptions",
    "check_queue",
    "current_enqueue_options",
    "enqueue",
    "enqueue_on",
    "placed_row",
    "queue_settings",
    "refuse_enqueue_options",
]

INTERNAL_QUEUE = "_dbos_internal_queue"

DuplicationPolicy = Literal["reject", "return-existing"]
"""On a taken deduplication ID: raise :class:`DBOSQueueDeduplicatedError` (``"reject"``) or
return a handle on the workflow that holds it (``"return-existing"``)."""


@dataclass(frozen=True, slots=True)
class EnqueueSettings:
    """How one enqueue places its workflow (from ``SetEnqueueOptions`` or ``EnqueueOptions``).

    ``app_version`` None pins the workflow to this process's application version, unless
    ``pin_version`` is False (an enqueue by options): then any latest version may run it.
    """

    priority: int | None = None
    deduplication_id: str | None = None
    queue_partition_key: str | None = None
    delay_seconds: float | None = None
    app_version: str | None = None
    duplication_policy: DuplicationPolicy = "reject"
    pin_version: bool = True
    application_name: str | None = None
    """The application that owns the workflow (None: the enqueuing process's)."""
    schedule_name: str | None = None
    """The schedule whose tick the workflow runs (set by the scheduler, not by users)."""

    @classmethod
    def checked(
        cls,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        app_version: str | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
        duplication_policy: DuplicationPolicy | None = None,
        pin_version: bool = True,
        application_name: str | None = None,
    ) -> EnqueueSettings:
        """The settings, or :class:`DBOSInvalidArgumentError` naming what is wrong."""
        if priority is not None:
            check_int("priority", priority, maximum=2**31 - 1)
        if delay_seconds is not None:
            check_number("delay_seconds", delay_seconds)
        for name, value in (
            ("deduplication_id", deduplication_id),
            ("app_version", app_version),
            ("queue_partition_key", queue_partition_key),
            ("application_name", application_name),
        ):
            if value is not None:
                check_id(name, value)
        policy = duplication_policy or "reject"
        if policy not in ("reject", "return-existing"):
            raise DBOSInvalidArgumentError(f"Unknown duplication_policy {duplication_policy!r}")
        if policy == "return-existing" and deduplication_id is None:
            raise DBOSInvalidArgumentError(
                "duplication_policy='return-existing' needs a deduplication_id"
            )
        return cls(
            priority,
            deduplication_id,
            queue_partition_key,
            delay_seconds,
            app_version,
            policy,
            pin_version,
            application_name,
        )


_enqueue_options: ContextVar[EnqueueSettings | None] = ContextVar(
    "dbos_enqueue_options", default=None
)


def refuse_enqueue_options() -> None:
    """Raise :class:`DBOSInvalidArgumentError` if an enclosing ``SetEnqueueOptions`` sets an
    option that only an enqueue can honour: the workflow being started is not enqueued."""
    options = _enqueue_options.get()
    if options is None:
        return
    misplaced = [
        name
        for name, value in (
            ("deduplication_id", options.deduplication_id),
            ("priority", options.priority),
            ("queue_partition_key", options.queue_partition_key),
            ("delay_seconds", options.delay_seconds),
        )
        if value is not None
    ]
    if misplaced:
        raise DBOSInvalidArgumentError(
            f"SetEnqueueOptions sets {', '.join(misplaced)}, but this workflow is started, not "
            "enqueued: those options apply only to an enqueue on a queue"
        )


def current_enqueue_options() -> EnqueueSettings:
    """The options of an enclosing ``SetEnqueueOptions`` (the defaults without one)."""
    return _enqueue_options.get() or EnqueueSettings()


class SetEnqueueOptions(_ContextSetter["EnqueueSettings | None"]):
    """Options for workflows enqueued in the block: priority, deduplication (and what to do
    when the ID is taken), partition, delay, application version."""

    _var = _enqueue_options

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        app_version: str | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
        duplication_policy: DuplicationPolicy | None = None,
    ) -> None:
        super().__init__(
            EnqueueSettings.checked(
                deduplication_id=deduplication_id,
                priority=priority,
                app_version=app_version,
                queue_partition_key=queue_partition_key,
                delay_seconds=delay_seconds,
                duplication_policy=duplication_policy,
            )
        )


async def queue_settings(runtime: Runtime, name: str) -> QueueSettings:
    """The settings of queue ``name``: declared here, known from the system database, read
    from it now (registered by another process a moment ago), or declared in code by another
    process of this application; else :class:`DBOSQueueNotFoundError`."""
    settings = runtime.queues.settings(name)
    if settings is not None:
        return settings
    if name == INTERNAL_QUEUE:  # every engine serves it (a client declares none)
        return QueueSettings()
    stored = await reload_queue(runtime, name)
    if stored is not None:
        return stored.settings
    declared = await declared_queue(runtime.db, runtime.application_name, name)
    if declared is None:
        raise DBOSQueueNotFoundError(name)
    return settings_from_row(declared)


def check_partition_key(queue_name: str, settings: QueueSettings, key: str | None) -> None:
    """A partitioned queue takes a ``queue_partition_key``, any other none."""
    if settings.partitioned and key is None:
        raise DBOSInvalidArgumentError(
            f"Queue {queue_name!r} is partitioned: every enqueue needs a queue_partition_key"
        )
    if not settings.partitioned and key is not None:
        raise DBOSInvalidArgumentError(
            f"Queue {queue_name!r} is not partitioned: it takes no queue_partition_key"
        )


async def check_queue(runtime: Runtime, queue_name: str, partition_key: str | None) -> None:
    """That ``queue_name`` exists and takes ``partition_key`` (a resume, fork or rewind)."""
    check_partition_key(queue_name, await queue_settings(runtime, queue_name), partition_key)


def placement_on(
    queue_name: str, settings: QueueSettings, options: EnqueueSettings, *, now_ms: int
) -> QueuePlacement:
    """Where an enqueue with ``options`` at ``now_ms`` (the engine clock's) puts its workflow,
    checked against the queue."""
    key = options.queue_partition_key
    check_partition_key(queue_name, settings, key)
    if settings.has_partition_limits and options.deduplication_id is not None:
        raise DBOSInvalidArgumentError(
            f"Queue {queue_name!r} has partition limits: deduplication is not supported on it"
        )
    delay_until = now_ms + int(options.delay_seconds * 1000) if options.delay_seconds else None
    return QueuePlacement(
        queue_name=queue_name,
        priority=options.priority or 0,
        deduplication_id=options.deduplication_id,
        partition_key=key,
        delay_until_epoch_ms=delay_until,
        app_version=options.app_version,
        pin_version=options.pin_version,
        application_name=options.application_name,
        schedule_name=options.schedule_name,
    )


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


async def placed_row(
    runtime: Runtime, call: WorkflowCall, queue_name: str, options: EnqueueSettings
) -> NewWorkflow:
    """The row that enqueues ``call`` on ``queue_name`` with ``options``, after checking both
    (for an enqueue written on another connection, in the caller's transaction)."""
    settings = await queue_settings(runtime, queue_name)
    placement = placement_on(queue_name, settings, options, now_ms=runtime.clock.now_ms())
    return workflow_row(runtime, call, placement)


async def enqueue_on(
    runtime: Runtime, call: WorkflowCall, queue_name: str, options: EnqueueSettings
) -> WorkflowHandleAsync[Any]:
    """Enqueue ``call`` on ``queue_name`` with ``options``, after checking both; a handle."""

    async def run() -> str:
        settings = await queue_settings(runtime, queue_name)
        placement = placement_on(queue_name, settings, options, now_ms=runtime.clock.now_ms())
        return await enqueue(runtime, call, placement, options.duplication_policy)

    return WorkflowHandleAsync(runtime, await runtime.forward(run()))
