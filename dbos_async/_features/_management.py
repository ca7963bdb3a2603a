"""Managing workflows from anywhere: list, cancel, resume, fork and delete them.

Each public function is a plain function
that validates its arguments at once and returns a coroutine doing the work on the engine's
loop. Called inside a workflow, the operation is a checkpointed step, so a replay sees what the
first execution saw (a resume or fork is not repeated). The listings live in ``_listing.py``
and are re-exported here.
"""

from __future__ import annotations

import logging
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
from .._core._sync import awaited
from .._core._validation import check_id, check_int
from .._sysdb._management import (
    ForkRequest,
    delete_workflow_rows,
    fork_workflow_row,
    resume_workflow_row,
)
from .._sysdb._notify import WORKFLOW_DONE
from .._sysdb._workflows import get_workflow
from ._handles import WorkflowHandleAsync
from ._listing import list_queued_workflows, list_workflow_steps, list_workflows
from ._queue import INTERNAL_QUEUE
from ._step import checkpointed

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = [
    "cancel_workflow",
    "delete_workflow",
    "fork_workflow",
    "list_queued_workflows",
    "list_workflow_steps",
    "list_workflows",
    "resume_workflow",
]

logger = logging.getLogger("dbos_async")


def cancel_workflow(workflow_id: str) -> Coroutine[Any, Any, None]:
    """Cancel a workflow wherever it runs (unless it finished); its waiters then get
    ``DBOSAwaitedWorkflowCancelledError``. An unknown ID raises
    :class:`DBOSNonExistentWorkflowError`."""
    check_id("workflow_id", workflow_id)
    runtime = runtime_here()
    return awaited(
        checkpointed("DBOS.cancelWorkflow", lambda: runtime.forward(runtime.cancel(workflow_id)))
    )


# Resume, fork, delete ----------------------------------------------------------------------


async def _handle(runtime: Runtime, workflow_id: Awaitable[str]) -> WorkflowHandleAsync[Any]:
    return WorkflowHandleAsync(runtime, await workflow_id)


async def _resume(runtime: Runtime, workflow_id: str, queue_name: str) -> str:
    before = await resume_workflow_row(runtime.db, workflow_id, queue_name)
    if before is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if before in ("SUCCESS", "ERROR"):
        logger.info("Workflow %s already finished (%s); not resumed", workflow_id, before)
    else:
        runtime.dispatcher.announce(queue_name)
    return workflow_id


def resume_workflow(
    workflow_id: str, *, queue_name: str | None = None
) -> Coroutine[Any, Any, WorkflowHandleAsync[Any]]:
    """Run a workflow that has not finished again from its last recorded step; return a handle.

    A CANCELLED (or PENDING, ENQUEUED, DELAYED, dead-lettered) workflow is enqueued on
    ``queue_name`` (default: the internal queue) with its recovery attempts reset; a workflow
    that ended in SUCCESS or ERROR is left as it is. An unknown ID raises
    :class:`DBOSNonExistentWorkflowError`.
    """
    check_id("workflow_id", workflow_id)
    target = INTERNAL_QUEUE if queue_name is None else check_id("queue_name", queue_name)
    runtime = runtime_here()
    resumed = checkpointed(
        "DBOS.resumeWorkflow", lambda: runtime.forward(_resume(runtime, workflow_id, target))
    )
    return _handle(runtime, resumed)


async def _fork(runtime: Runtime, fork: ForkRequest) -> str:
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


def _next_id() -> str:
    assigned = take_next_workflow_id()
    return assigned.workflow_id if assigned is not None else str(uuid.uuid4())


def fork_workflow(
    workflow_id: str,
    start_step: int,
    *,
    application_version: str | None = None,
    queue_name: str | None = None,
) -> Coroutine[Any, Any, WorkflowHandleAsync[Any]]:
    """Start a copy of a workflow that replays its steps before ``start_step`` and runs the rest.

    Steps are numbered from 1, so ``start_step=1`` runs the whole workflow again. The copy
    gets the ID set by an enclosing ``SetWorkflowID`` (else a new UUID), the original's inputs
    and authentication, and is enqueued on ``queue_name`` (default: the internal queue) to run
    on ``application_version`` (default: any). Returns a handle on the copy.
    """
    check_id("workflow_id", workflow_id)
    check_int("start_step", start_step)
    if application_version is not None:
        check_id("application_version", application_version)
    target = INTERNAL_QUEUE if queue_name is None else check_id("queue_name", queue_name)
    runtime = runtime_here()
    queue = runtime.registry.queues.get(target)
    if queue is not None and queue.partition_queue:
        raise DBOSInvalidArgumentError(f"Cannot fork onto partitioned queue {target!r}")
    fork = ForkRequest(
        original_id=workflow_id,
        forked_id=_next_id(),
        start_step=start_step,
        queue_name=target,
        application_version=application_version,
    )
    forked = checkpointed("DBOS.forkWorkflow", lambda: runtime.forward(_fork(runtime, fork)))
    return _handle(runtime, forked)


async def _delete(runtime: Runtime, workflow_id: str, delete_children: bool) -> None:
    deleted = await delete_workflow_rows(runtime.db, workflow_id, with_children=delete_children)
    for deleted_id in deleted:
        # Waiters here re-read the row and learn it no longer exists.
        runtime.notifier.notify_local(WORKFLOW_DONE, deleted_id)


def delete_workflow(
    workflow_id: str, *, delete_children: bool = False
) -> Coroutine[Any, Any, None]:
    """Delete a workflow and everything recorded for it (and its descendants, if asked).

    Deleting a workflow that does not exist does nothing.
    """
    check_id("workflow_id", workflow_id)
    runtime = runtime_here()
    return awaited(
        checkpointed(
            "DBOS.deleteWorkflow",
            lambda: runtime.forward(_delete(runtime, workflow_id, bool(delete_children))),
        )
    )
