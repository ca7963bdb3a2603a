"""Running a workflow again from a step: ``fork_workflow`` (a copy) and ``rewind_workflow``.

A fork is a new workflow that replays the original's recorded steps before ``start_step`` and
runs the rest; the original is untouched. A rewind runs a finished workflow itself again from
``start_step``, under the same ID (its later history is discarded). Both are enqueued; steps
are numbered from 1.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

import asyncpg

from .._core._context import runtime_here, take_next_workflow_id
from .._core._errors import (
    DBOSConflictingWorkflowError,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
)
from .._core._validation import check_id, check_int, check_number
from .._sysdb._changes import rewind_workflow_row
from .._sysdb._management import ForkRequest, fork_workflow_row
from .._sysdb._workflows import get_workflow
from ._enqueue import INTERNAL_QUEUE, check_queue
from ._handles import WorkflowHandleAsync
from ._management import managed
from ._transactions import delete_transaction_outputs

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = ["fork_workflow", "rewind_workflow"]

_FINAL = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


async def _handle(runtime: Runtime, workflow_id: Awaitable[str]) -> WorkflowHandleAsync[Any]:
    return WorkflowHandleAsync(runtime, await workflow_id)


def _target(queue_name: str | None, partition_key: str | None) -> str:
    """The queue a fork or rewind goes to (checked against the queue by :func:`check_queue`
    before anything is written)."""
    target = INTERNAL_QUEUE if queue_name is None else check_id("queue_name", queue_name)
    if partition_key is not None:
        check_id("queue_partition_key", partition_key)
    return target


async def _fork(runtime: Runtime, fork: ForkRequest) -> str:
    await check_queue(runtime, fork.queue_name, fork.queue_partition_key)
    try:
        found = await fork_workflow_row(runtime.db, fork)
    except asyncpg.UniqueViolationError:
        existing = await get_workflow(runtime.db, fork.forked_id)
        if existing is not None and existing["forked_from"] == fork.original_id:
            return fork.forked_id  # this fork was already made
        raise DBOSConflictingWorkflowError(
            fork.forked_id, "a workflow with this ID already exists"
        ) from None
    if not found:
        raise DBOSNonExistentWorkflowError(fork.original_id)
    runtime.dispatcher.announce(fork.queue_name)
    return fork.forked_id


def _replacements(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DBOSInvalidArgumentError("replacement_children must map workflow IDs to IDs")
    return dict(value)


def fork_workflow(
    workflow_id: str,
    start_step: int,
    *,
    application_version: str | None = None,
    queue_name: str | None = None,
    queue_partition_key: str | None = None,
    replacement_children: dict[str, str] | None = None,
    timeout_seconds: float | None = None,
) -> Coroutine[Any, Any, WorkflowHandleAsync[Any]]:
    """Start a copy of a workflow that replays its steps before ``start_step`` and runs the rest.

    ``start_step=1`` runs the whole workflow again. The copy gets the ID set by an enclosing
    ``SetWorkflowID`` (else a new UUID), the original's inputs, authentication and attributes,
    and is enqueued on ``queue_name`` (default: the internal queue; with
    ``queue_partition_key`` on a partitioned one) to run on ``application_version`` (default:
    any), with ``timeout_seconds`` from its start if given. ``replacement_children`` maps the
    original's child workflow IDs to the ones the copy's recorded steps name instead. Returns a
    handle on the copy.
    """
    check_id("workflow_id", workflow_id)
    check_int("start_step", start_step)
    if application_version is not None:
        check_id("application_version", application_version)
    timeout_ms = None
    if timeout_seconds is not None:
        timeout_ms = int(check_number("timeout_seconds", timeout_seconds, strict=True) * 1000)
    runtime = runtime_here()
    assigned = take_next_workflow_id()
    fork = ForkRequest(
        original_id=workflow_id,
        forked_id=assigned.workflow_id if assigned is not None else str(uuid.uuid4()),
        start_step=start_step,
        queue_name=_target(queue_name, queue_partition_key),
        application_version=application_version,
        queue_partition_key=queue_partition_key,
        timeout_ms=timeout_ms,
        replacement_children=_replacements(replacement_children),
    )
    forked = managed("DBOS.forkWorkflow", runtime, lambda: _fork(runtime, fork))
    return _handle(runtime, forked)


async def _rewind(
    runtime: Runtime,
    workflow_id: str,
    start_step: int,
    queue_name: str,
    partition_key: str | None,
    application_version: str | None,
) -> str:
    await check_queue(runtime, queue_name, partition_key)
    row = await get_workflow(runtime.db, workflow_id)
    if row is not None and row["status"] in _FINAL:
        # Before the row is back on its queue: the rewound transactions must run again.
        await delete_transaction_outputs([workflow_id], start_step)
    before = await rewind_workflow_row(
        runtime.db,
        workflow_id,
        start_step,
        queue_name=queue_name,
        queue_partition_key=partition_key,
        application_version=application_version,
    )
    if before is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if before not in _FINAL:
        raise DBOSInvalidArgumentError(
            f"Workflow {workflow_id} is {before}: only a finished workflow can be rewound "
            "(cancel it first)"
        )
    runtime.dispatcher.announce(queue_name)
    return workflow_id


def rewind_workflow(
    workflow_id: str,
    *,
    start_step: int | None = None,
    application_version: str | None = None,
    queue_name: str | None = None,
    queue_partition_key: str | None = None,
) -> Coroutine[Any, Any, WorkflowHandleAsync[Any]]:
    """Run a finished workflow again, under its own ID, from ``start_step`` (default: 1).

    What it recorded from that step on is discarded (steps, events set, messages consumed and
    those still waiting, a stream's close) and it is enqueued on ``queue_name`` (default: the
    internal queue). A workflow still running must be cancelled first. Returns a handle.
    """
    check_id("workflow_id", workflow_id)
    step = 1 if start_step is None else check_int("start_step", start_step)
    if application_version is not None:
        check_id("application_version", application_version)
    runtime = runtime_here()
    target = _target(queue_name, queue_partition_key)
    rewound = managed(
        "DBOS.rewindWorkflow",
        runtime,
        lambda: _rewind(
            runtime, workflow_id, step, target, queue_partition_key, application_version
        ),
    )
    return _handle(runtime, rewound)
