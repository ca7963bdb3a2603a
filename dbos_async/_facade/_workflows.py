"""The ``DBOS`` façade's workflows: decorators, starting, handles, results, ``run_step``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._core._context import runtime_here
from .._core._errors import DBOSNonExistentWorkflowError
from .._core._roles import default_required_roles, required_roles
from .._core._status import WorkflowStatus
from .._core._validation import check_id
from .._features._app_database import transaction
from .._features._decorators import (
    bound_arguments,
    dbos_class,
    prepare_start,
    run_step_async,
    run_step_sync,
    step,
    workflow,
    workflow_info,
)
from .._features._handles import WorkflowHandle, WorkflowHandleAsync, read_status, wait_first
from .._features._reservations import reserve_step
from .._features._scheduled import scheduled
from .._features._step import checkpointed
from .._features._workflow import start_workflow, wait_result
from ._base import FacadeBase

__all__ = ["WorkflowAPI"]


class WorkflowAPI(FacadeBase):
    """Declaring, starting and awaiting workflows and steps."""

    workflow = staticmethod(workflow)
    step = staticmethod(step)
    transaction = staticmethod(transaction)
    dbos_class = staticmethod(dbos_class)
    required_roles = staticmethod(required_roles)
    default_required_roles = staticmethod(default_required_roles)
    scheduled = staticmethod(scheduled)
    reserve_step = staticmethod(reserve_step)

    @classmethod
    def start_workflow_async(
        cls, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Start ``func`` as a workflow in the background; return a handle on it."""
        runtime = runtime_here()
        call = prepare_start(workflow_info(func), bound_arguments(func, args), kwargs)

        async def run() -> WorkflowHandleAsync[Any]:
            workflow_id = await runtime.forward(start_workflow(runtime, call))
            return WorkflowHandleAsync(runtime, workflow_id)

        return run()

    @classmethod
    def start_workflow(
        cls, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Start ``func`` as a workflow in the background; return a handle on it."""
        handle = cls._block(
            lambda: cls.start_workflow_async(func, *args, **kwargs), "start_workflow"
        )
        return WorkflowHandle(runtime_here(), handle.workflow_id)

    @classmethod
    def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """A handle on an existing workflow (``DBOSNonExistentWorkflowError`` if unknown)."""
        runtime = runtime_here()
        status = cls.get_workflow_status_async(workflow_id) if existing_workflow else None

        async def run() -> WorkflowHandleAsync[Any]:
            if status is not None and await status is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
            return WorkflowHandleAsync(runtime, workflow_id)

        return run()

    @classmethod
    def retrieve_workflow(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle on an existing workflow (``DBOSNonExistentWorkflowError`` if unknown)."""
        runtime = runtime_here()
        cls._block(
            lambda: cls.retrieve_workflow_async(workflow_id, existing_workflow), "retrieve_workflow"
        )
        return WorkflowHandle(runtime, workflow_id)

    @classmethod
    def get_result_async(cls, workflow_id: str) -> Awaitable[Any]:
        """Wait for a workflow to finish; return its result or raise its error."""
        runtime = runtime_here()
        check_id("A workflow ID", workflow_id)
        return checkpointed(
            "DBOS.getResult", lambda: runtime.forward(wait_result(runtime, workflow_id))
        )

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        """Wait for a workflow to finish; return its result or raise its error."""
        return cls._block(lambda: cls.get_result_async(workflow_id), "get_result")

    @classmethod
    def get_workflow_status_async(cls, workflow_id: str) -> Awaitable[WorkflowStatus | None]:
        """The recorded status of a workflow, or None if no workflow has this ID."""
        runtime = runtime_here()
        check_id("A workflow ID", workflow_id)
        return checkpointed(
            "DBOS.getStatus", lambda: runtime.forward(read_status(runtime, workflow_id))
        )

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> WorkflowStatus | None:
        """The recorded status of a workflow, or None if no workflow has this ID."""
        return cls._block(lambda: cls.get_workflow_status_async(workflow_id), "get_workflow_status")

    run_step_async = staticmethod(run_step_async)
    run_step = staticmethod(run_step_sync)

    @classmethod
    def wait_first_async(
        cls,
        handles: Sequence[WorkflowHandleAsync[Any]],
        *,
        polling_interval_sec: float = 1.0,
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Wait until the first of ``handles``' workflows finishes; return its handle.

        ``polling_interval_sec`` is accepted for DBOS's API: completion wakes the wait.
        """
        index = wait_first(handles, polling_interval_sec)

        async def run() -> WorkflowHandleAsync[Any]:
            return handles[await index]

        return run()

    @classmethod
    def wait_first(
        cls, handles: Sequence[WorkflowHandle[Any]], *, polling_interval_sec: float = 1.0
    ) -> WorkflowHandle[Any]:
        """Wait until the first of ``handles``' workflows finishes; return its handle.

        ``polling_interval_sec`` is accepted for DBOS's API: completion wakes the wait.
        """
        index = cls._block(lambda: wait_first(handles, polling_interval_sec), "wait_first")
        return handles[index]
