"""Managing workflows from anywhere: cancel, resume, delete, delay, and their attributes.

Each public function is a plain function that validates its arguments at once and returns a
coroutine doing the work on the engine's loop. Called inside a workflow, the operation is a
checkpointed step, so a replay sees what the first execution saw (a resume is not repeated).
The listings live in ``_listing.py``, forks and rewinds in ``_forks.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .._core._context import runtime_here
from .._core._errors import DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from .._core._sync import awaited
from .._core._validation import check_id, check_int, check_json_object, check_number
from .._sysdb._changes import (
    delete_workflow_rows,
    resume_workflow_rows,
    set_delay_row,
    update_attributes_row,
)
from .._sysdb._notify import WORKFLOW_DONE
from ._enqueue import INTERNAL_QUEUE, queue_settings
from ._handles import WorkflowHandleAsync
from ._step import checkpointed
from ._transactions import delete_transaction_outputs

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = [
    "delete_recorded",
    "cancel_workflow",
    "cancel_workflows",
    "delete_workflow",
    "delete_workflows",
    "resume_workflow",
    "resume_workflows",
    "set_workflow_delay",
    "update_workflow_attributes",
]

logger = logging.getLogger("dbos_async")

T = TypeVar("T")


def check_ids(name: str, values: object) -> list[str]:
    """A non-empty list of workflow IDs, or :class:`DBOSInvalidArgumentError`."""
    if not isinstance(values, (list, tuple)) or not values:
        raise DBOSInvalidArgumentError(f"{name} must be a non-empty list of workflow IDs")
    return [check_id(name, value) for value in values]


def managed(
    operation: str, runtime: Runtime, work: Callable[[], Coroutine[Any, Any, T]]
) -> Coroutine[Any, Any, T]:
    """``work()`` on the engine's loop; inside a workflow, the checkpointed step ``operation``."""
    return awaited(checkpointed(operation, lambda: runtime.forward(work())))


# Cancel --------------------------------------------------------------------------------------


def cancel_workflows(
    workflow_ids: list[str], *, cancel_children: bool = False
) -> Coroutine[Any, Any, None]:
    """Cancel workflows (and, with ``cancel_children``, every workflow they started, and so
    on) wherever they run, unless they finished. Their waiters then get
    ``DBOSAwaitedWorkflowCancelledError``. If one of the IDs is unknown, nothing is cancelled
    and :class:`DBOSNonExistentWorkflowError` names it."""
    ids = check_ids("workflow_ids", workflow_ids)
    runtime = runtime_here()
    return managed(
        "DBOS.cancelWorkflows",
        runtime,
        lambda: runtime.cancel(ids, with_children=bool(cancel_children)),
    )


def cancel_workflow(
    workflow_id: str, *, cancel_children: bool = False
) -> Coroutine[Any, Any, None]:
    """Cancel a workflow wherever it runs (see :func:`cancel_workflows`)."""
    check_id("workflow_id", workflow_id)
    runtime = runtime_here()
    return managed(
        "DBOS.cancelWorkflow",
        runtime,
        lambda: runtime.cancel([workflow_id], with_children=bool(cancel_children)),
    )


# Resume ------------------------------------------------------------------------------------


async def _resume(runtime: Runtime, workflow_ids: list[str], queue_name: str) -> list[str]:
    await queue_settings(runtime, queue_name)  # it must exist (a partition key is kept)
    missing, resumed = await resume_workflow_rows(runtime.db, workflow_ids, queue_name)
    if missing:
        raise DBOSNonExistentWorkflowError(missing[0])
    if resumed:
        runtime.dispatcher.announce(queue_name)
    for workflow_id in set(workflow_ids) - set(resumed):
        logger.info("Workflow %s already ended; not resumed", workflow_id)
    return workflow_ids


async def _handles(
    runtime: Runtime, workflow_ids: Awaitable[list[str]]
) -> list[WorkflowHandleAsync[Any]]:
    return [WorkflowHandleAsync(runtime, workflow_id) for workflow_id in await workflow_ids]


def resume_workflows(
    workflow_ids: list[str], *, queue_name: str | None = None
) -> Coroutine[Any, Any, list[WorkflowHandleAsync[Any]]]:
    """Run workflows that have not finished again from their last recorded step; handles.

    A CANCELLED (or PENDING, ENQUEUED, DELAYED, dead-lettered) workflow is enqueued on
    ``queue_name`` (default: the internal queue) with its recovery attempts reset; one that
    ended in SUCCESS or ERROR is left as it is. If one of the IDs is unknown, nothing is resumed
    and :class:`DBOSNonExistentWorkflowError` names it.
    """
    ids = check_ids("workflow_ids", workflow_ids)
    target = INTERNAL_QUEUE if queue_name is None else check_id("queue_name", queue_name)
    runtime = runtime_here()
    resumed = managed("DBOS.resumeWorkflows", runtime, lambda: _resume(runtime, ids, target))
    return _handles(runtime, resumed)


async def _one(handles: Awaitable[list[WorkflowHandleAsync[Any]]]) -> WorkflowHandleAsync[Any]:
    return (await handles)[0]


def resume_workflow(
    workflow_id: str, *, queue_name: str | None = None
) -> Coroutine[Any, Any, WorkflowHandleAsync[Any]]:
    """Run a workflow that has not finished again from its last recorded step (see
    :func:`resume_workflows`); a handle on it."""
    check_id("workflow_id", workflow_id)
    target = INTERNAL_QUEUE if queue_name is None else check_id("queue_name", queue_name)
    runtime = runtime_here()
    resumed = managed(
        "DBOS.resumeWorkflow", runtime, lambda: _resume(runtime, [workflow_id], target)
    )
    return _one(_handles(runtime, resumed))


# Delete ------------------------------------------------------------------------------------


async def delete_recorded(runtime: Runtime, workflow_ids: list[str], delete_children: bool) -> None:
    """Delete these workflows' rows and everything recorded for them, and tell waiters."""
    deleted = await delete_workflow_rows(runtime.db, workflow_ids, with_children=delete_children)
    for deleted_id in deleted:
        # Waiters here re-read the row and learn it no longer exists.
        runtime.notifier.notify_local(WORKFLOW_DONE, deleted_id)
    await delete_transaction_outputs(deleted)


def delete_workflows(
    workflow_ids: list[str], *, delete_children: bool = False
) -> Coroutine[Any, Any, None]:
    """Delete workflows and everything recorded for them (and for their descendants, with
    ``delete_children``). An ID that does not exist is skipped."""
    ids = check_ids("workflow_ids", workflow_ids)
    runtime = runtime_here()
    return managed(
        "DBOS.deleteWorkflows",
        runtime,
        lambda: delete_recorded(runtime, ids, bool(delete_children)),
    )


def delete_workflow(
    workflow_id: str, *, delete_children: bool = False
) -> Coroutine[Any, Any, None]:
    """Delete a workflow and everything recorded for it (see :func:`delete_workflows`)."""
    check_id("workflow_id", workflow_id)
    runtime = runtime_here()
    return managed(
        "DBOS.deleteWorkflow",
        runtime,
        lambda: delete_recorded(runtime, [workflow_id], bool(delete_children)),
    )


# Delay and attributes ----------------------------------------------------------------------


async def _set_delay(runtime: Runtime, workflow_id: str, delay_until_ms: int) -> None:
    status, queue_name = await set_delay_row(runtime.db, workflow_id, delay_until_ms)
    if status is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if status != "DELAYED":
        logger.info("Workflow %s is %s, not DELAYED; its delay is unchanged", workflow_id, status)
    elif queue_name is not None:
        runtime.dispatcher.announce(queue_name, delayed_until_ms=delay_until_ms)


def set_workflow_delay(
    workflow_id: str,
    *,
    delay_seconds: float | None = None,
    delay_until_epoch_ms: int | None = None,
) -> Coroutine[Any, Any, None]:
    """Move the start of a DELAYED workflow: ``delay_seconds`` from now, or to
    ``delay_until_epoch_ms`` (give exactly one). A workflow in another state is left alone."""
    check_id("workflow_id", workflow_id)
    if (delay_seconds is None) == (delay_until_epoch_ms is None):
        raise DBOSInvalidArgumentError("Give exactly one of delay_seconds and delay_until_epoch_ms")
    if delay_seconds is not None:
        seconds = check_number("delay_seconds", delay_seconds)
        until = runtime_here().clock.now_ms() + int(seconds * 1000)
    else:
        until = check_int("delay_until_epoch_ms", delay_until_epoch_ms, minimum=0)
    runtime = runtime_here()
    return managed(
        "DBOS.setWorkflowDelay", runtime, lambda: _set_delay(runtime, workflow_id, until)
    )


async def _update_attributes(
    runtime: Runtime, workflow_id: str, attributes: str | None, merge: bool
) -> None:
    if not await update_attributes_row(runtime.db, workflow_id, attributes, merge=merge):
        raise DBOSNonExistentWorkflowError(workflow_id)


def update_workflow_attributes(
    workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
) -> Coroutine[Any, Any, None]:
    """Replace a workflow's attributes (a JSON-serializable dict, or None to clear them), or
    with ``merge`` add these keys to them. ``list_workflows(attributes=...)`` finds them."""
    check_id("workflow_id", workflow_id)
    text = check_json_object("attributes", attributes)
    runtime = runtime_here()
    return managed(
        "DBOS.updateWorkflowAttributes",
        runtime,
        lambda: _update_attributes(runtime, workflow_id, text, bool(merge)),
    )
