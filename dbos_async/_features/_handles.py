"""Workflow handles: ``WorkflowHandleAsync`` and its blocking twin ``WorkflowHandle``.

A handle is an ID plus the runtime that can wait on it. Inside a workflow, ``get_result`` and
``get_status`` are checkpointed operations, so a replay sees what the first run saw.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .._core._context import block_on
from .._core._errors import DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from .._core._runtime import Runtime
from .._core._status import WorkflowStatus, status_from_row
from .._core._validation import check_number
from .._sysdb._workflows import get_workflow
from ._step import checkpointed
from ._workflow import wait_result

__all__ = ["WorkflowHandle", "WorkflowHandleAsync", "first_finished", "read_status", "wait_first"]

R = TypeVar("R")
T = TypeVar("T")


async def read_status(runtime: Runtime, workflow_id: str) -> WorkflowStatus | None:
    """The recorded status of ``workflow_id``, or None when no such workflow exists."""
    row = await get_workflow(runtime.db, workflow_id)
    return status_from_row(row, runtime.codec) if row is not None else None


class _Handle:
    """What every handle is: a workflow ID and the runtime that can wait on it."""

    def __init__(self, runtime: Runtime, workflow_id: str) -> None:
        self._runtime = runtime
        self.workflow_id = workflow_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.workflow_id!r})"

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id


class WorkflowHandleAsync(_Handle, Generic[R]):
    """A handle on a workflow, for async code."""

    def get_result(self) -> Awaitable[R]:
        """Wait for the workflow to finish; return its result or raise its error."""
        runtime, workflow_id = self._runtime, self.workflow_id
        return checkpointed(
            "DBOS.getResult", lambda: runtime.forward(wait_result(runtime, workflow_id))
        )

    def get_status(self) -> Awaitable[WorkflowStatus]:
        """The workflow's current recorded status (:class:`DBOSNonExistentWorkflowError` if it
        does not exist, say deleted since the handle was made)."""
        runtime, workflow_id = self._runtime, self.workflow_id

        async def existing() -> WorkflowStatus:
            status = await read_status(runtime, workflow_id)
            if status is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
            return status

        return checkpointed("DBOS.getStatus", lambda: runtime.forward(existing()))


class WorkflowHandle(_Handle, Generic[R]):
    """A handle on a workflow, for sync code: each method blocks on the engine's loop."""

    @classmethod
    def of(cls, handle: WorkflowHandleAsync[R]) -> WorkflowHandle[R]:
        """The sync handle on the workflow ``handle`` names."""
        return cls(handle._runtime, handle.workflow_id)

    def __init__(self, runtime: Runtime, workflow_id: str) -> None:
        super().__init__(runtime, workflow_id)
        self._async: WorkflowHandleAsync[R] = WorkflowHandleAsync(runtime, workflow_id)

    def get_result(self) -> R:
        """Block until the workflow finishes; return its result or raise its error."""
        return self._block(self._async.get_result, "get_result")

    def get_status(self) -> WorkflowStatus:
        """The workflow's current recorded status (:class:`DBOSNonExistentWorkflowError` if it
        does not exist)."""
        return self._block(self._async.get_status, "get_status")

    def _block(self, start: Callable[[], Awaitable[T]], method: str) -> T:
        return block_on(
            self._runtime,
            start,
            operation=f"WorkflowHandle.{method}",
            alternative=f"await WorkflowHandleAsync.{method}()",
        )


async def _settled(runtime: Runtime, workflow_id: str) -> None:
    with contextlib.suppress(Exception):  # finished with an error is still finished
        await wait_result(runtime, workflow_id)


async def first_finished(runtime: Runtime, workflow_ids: list[str]) -> int:
    """The index of the first of these workflows to finish (the lowest index on a tie)."""
    waiters = [
        asyncio.ensure_future(_settled(runtime, workflow_id)) for workflow_id in workflow_ids
    ]
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return min(waiters.index(task) for task in done)


def wait_first(handles: Sequence[_Handle], polling_interval_sec: float = 1.0) -> Awaitable[int]:
    """Wait until one of ``handles``' workflows finishes; its index (checkpointed in a workflow).

    ``polling_interval_sec`` is checked but unused: a finishing workflow wakes the wait.
    """
    check_number("polling_interval_sec", polling_interval_sec, minimum=0.001)
    if not handles:
        raise DBOSInvalidArgumentError("wait_first needs at least one handle")
    ids = [handle.workflow_id for handle in handles]
    if len(set(ids)) != len(ids):
        raise DBOSInvalidArgumentError("wait_first was given the same workflow twice")
    runtime = handles[0]._runtime
    return checkpointed("DBOS.waitFirst", lambda: runtime.forward(first_finished(runtime, ids)))
