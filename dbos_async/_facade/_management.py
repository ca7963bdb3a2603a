"""The ``DBOS`` façade's management: list, cancel, resume, fork, rewind, delete workflows.

Each sync form is its async form through the one bridge (``blocking``): the same parameters,
spelled out once, in the feature.
"""

from __future__ import annotations

from .._features import _forks, _listing, _maintenance, _management
from ._base import FacadeBase, blocking, blocking_handle, blocking_handles

__all__ = ["ManagementAPI"]


class ManagementAPI(FacadeBase):
    """Managing workflows from anywhere (checkpointed when called inside a workflow)."""

    list_workflows_async = staticmethod(_listing.list_workflows)
    list_workflows = staticmethod(blocking("list_workflows", _listing.list_workflows))
    list_queued_workflows_async = staticmethod(_listing.list_queued_workflows)
    list_queued_workflows = staticmethod(
        blocking("list_queued_workflows", _listing.list_queued_workflows)
    )
    list_workflow_steps_async = staticmethod(_listing.list_workflow_steps)
    list_workflow_steps = staticmethod(
        blocking("list_workflow_steps", _listing.list_workflow_steps)
    )

    cancel_workflow_async = staticmethod(_management.cancel_workflow)
    cancel_workflow = staticmethod(blocking("cancel_workflow", _management.cancel_workflow))
    cancel_workflows_async = staticmethod(_management.cancel_workflows)
    cancel_workflows = staticmethod(blocking("cancel_workflows", _management.cancel_workflows))
    resume_workflow_async = staticmethod(_management.resume_workflow)
    resume_workflow = staticmethod(blocking_handle("resume_workflow", _management.resume_workflow))
    resume_workflows_async = staticmethod(_management.resume_workflows)
    resume_workflows = staticmethod(
        blocking_handles("resume_workflows", _management.resume_workflows)
    )
    delete_workflow_async = staticmethod(_management.delete_workflow)
    delete_workflow = staticmethod(blocking("delete_workflow", _management.delete_workflow))
    delete_workflows_async = staticmethod(_management.delete_workflows)
    delete_workflows = staticmethod(blocking("delete_workflows", _management.delete_workflows))
    set_workflow_delay_async = staticmethod(_management.set_workflow_delay)
    set_workflow_delay = staticmethod(
        blocking("set_workflow_delay", _management.set_workflow_delay)
    )
    update_workflow_attributes_async = staticmethod(_management.update_workflow_attributes)
    update_workflow_attributes = staticmethod(
        blocking("update_workflow_attributes", _management.update_workflow_attributes)
    )

    fork_workflow_async = staticmethod(_forks.fork_workflow)
    fork_workflow = staticmethod(blocking_handle("fork_workflow", _forks.fork_workflow))
    rewind_workflow_async = staticmethod(_forks.rewind_workflow)
    rewind_workflow = staticmethod(blocking_handle("rewind_workflow", _forks.rewind_workflow))

    garbage_collect_async = staticmethod(_maintenance.garbage_collect)
    garbage_collect = staticmethod(blocking("garbage_collect", _maintenance.garbage_collect))
    global_timeout_async = staticmethod(_maintenance.global_timeout)
    global_timeout = staticmethod(blocking("global_timeout", _maintenance.global_timeout))
