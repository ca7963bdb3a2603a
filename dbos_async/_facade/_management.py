"""The ``DBOS`` façade's management: list, cancel, resume, fork and delete workflows."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from .._core._context import runtime_here
from .._core._status import StepInfo, WorkflowStatus
from .._features._handles import WorkflowHandle
from .._features._management import (
    cancel_workflow,
    delete_workflow,
    fork_workflow,
    list_queued_workflows,
    list_workflow_steps,
    list_workflows,
    resume_workflow,
)
from ._base import FacadeBase

__all__ = ["ManagementAPI"]


class ManagementAPI(FacadeBase):
    """Managing workflows from anywhere (checkpointed when called inside a workflow)."""

    @classmethod
    def cancel_workflow_async(cls, workflow_id: str) -> Awaitable[None]:
        """Cancel a workflow wherever it runs; awaiting it then raises a cancellation error."""
        return cancel_workflow(workflow_id)

    @classmethod
    def cancel_workflow(cls, workflow_id: str) -> None:
        """Cancel a workflow wherever it runs; awaiting it then raises a cancellation error."""
        cls._block(lambda: cls.cancel_workflow_async(workflow_id), "cancel_workflow")

    list_workflows_async = staticmethod(list_workflows)
    list_queued_workflows_async = staticmethod(list_queued_workflows)
    list_workflow_steps_async = staticmethod(list_workflow_steps)
    resume_workflow_async = staticmethod(resume_workflow)
    fork_workflow_async = staticmethod(fork_workflow)
    delete_workflow_async = staticmethod(delete_workflow)

    @classmethod
    def list_workflows(cls, **filters: Any) -> list[WorkflowStatus]:
        """Workflows matching DBOS's filters (``status``, ``name``, ``start_time``, ...)."""
        return cls._block(lambda: list_workflows(**filters), "list_workflows")

    @classmethod
    def list_queued_workflows(cls, **filters: Any) -> list[WorkflowStatus]:
        """Workflows waiting in or running from a queue."""
        return cls._block(lambda: list_queued_workflows(**filters), "list_queued_workflows")

    @classmethod
    def list_workflow_steps(cls, workflow_id: str, **options: Any) -> list[StepInfo]:
        """A workflow's recorded steps, in order."""
        return cls._block(
            lambda: list_workflow_steps(workflow_id, **options), "list_workflow_steps"
        )

    @classmethod
    def resume_workflow(cls, workflow_id: str, **options: Any) -> WorkflowHandle[Any]:
        """Continue a cancelled or stuck workflow from its last completed step."""
        handle = cls._block(lambda: resume_workflow(workflow_id, **options), "resume_workflow")
        return WorkflowHandle(runtime_here(), handle.workflow_id)

    @classmethod
    def fork_workflow(
        cls, workflow_id: str, start_step: int, **options: Any
    ) -> WorkflowHandle[Any]:
        """Start a new workflow that reuses the steps before ``start_step`` and runs the rest."""
        handle = cls._block(
            lambda: fork_workflow(workflow_id, start_step, **options), "fork_workflow"
        )
        return WorkflowHandle(runtime_here(), handle.workflow_id)

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and everything recorded for it."""
        cls._block(
            lambda: delete_workflow(workflow_id, delete_children=delete_children), "delete_workflow"
        )
