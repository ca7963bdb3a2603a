"""The ``DBOS`` façade's queues: registering them in the system database, and enqueueing on a
queue named at the call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._features._enqueue_by_name import EnqueueOptions, enqueue_by_options, enqueue_workflow
from .._features._handles import WorkflowHandle, WorkflowHandleAsync
from .._features._queue import Queue
from .._features._queue_admin import (
    delete_queue,
    list_queues,
    register_queue,
    retrieve_queue,
)
from ._base import FacadeBase, blocking

__all__ = ["QueueAPI"]


class QueueAPI(FacadeBase):
    """``register_queue`` and its kin, ``enqueue_workflow`` and
    ``enqueue_workflow_with_options``."""

    retrieve_queue_async = staticmethod(retrieve_queue)
    retrieve_queue = staticmethod(blocking("retrieve_queue", retrieve_queue))
    delete_queue_async = staticmethod(delete_queue)
    delete_queue = staticmethod(blocking("delete_queue", delete_queue))
    register_queue_async = staticmethod(register_queue)
    register_queue = staticmethod(blocking("register_queue", register_queue))

    @classmethod
    async def list_queues_async(
        cls, *, application_name: str | list[str] | None = None
    ) -> list[Queue]:
        """The queues registered in the system database: this application's (and unclaimed
        ones), or those of the applications named."""
        return await list_queues(application_name)

    @classmethod
    def list_queues(cls, *, application_name: str | list[str] | None = None) -> list[Queue]:
        """The queues registered in the system database (see :meth:`list_queues_async`)."""
        return cls._block(lambda: list_queues(application_name), "list_queues")

    @classmethod
    def enqueue_workflow_async(
        cls, queue_name: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Enqueue ``func`` (a workflow, or its registered name) on the queue ``queue_name``,
        with the options of an enclosing ``SetEnqueueOptions``."""
        return enqueue_workflow(queue_name, func, args, kwargs)

    @classmethod
    def enqueue_workflow(
        cls, queue_name: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue ``func`` (a workflow, or its registered name) on the queue ``queue_name``."""
        handle = cls._block(
            lambda: enqueue_workflow(queue_name, func, args, kwargs), "enqueue_workflow"
        )
        return WorkflowHandle.of(handle)

    @classmethod
    def enqueue_workflow_with_options_async(
        cls, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Enqueue the workflow ``options`` names (``workflow_name``, ``queue_name`` and the
        rest), which another process may implement; a handle on it."""
        return enqueue_by_options(options, args, kwargs)

    @classmethod
    def enqueue_workflow_with_options(
        cls, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue the workflow ``options`` names (see
        :meth:`enqueue_workflow_with_options_async`)."""
        handle = cls._block(
            lambda: enqueue_by_options(options, args, kwargs), "enqueue_workflow_with_options"
        )
        return WorkflowHandle.of(handle)
