"""Reading workflow records: ``list_workflows``, ``list_queued_workflows``, ``list_workflow_steps``.

Like every management function, each validates its arguments at once and returns a coroutine
that reads on the engine's loop; inside a workflow the read is a checkpointed step, so a replay
sees what the first execution saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._core._context import runtime_here
from .._core._errors import DBOSInvalidArgumentError
from .._core._status import (
    StepInfo,
    WorkflowStatus,
    WorkflowStatusString,
    _safe_loads,
    status_from_row,
)
from .._core._sync import awaited
from .._core._validation import check_id, check_int, check_json_object
from .._sysdb._management import WorkflowFilter, list_workflow_rows, step_rows
from ._step import checkpointed

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = ["list_queued_workflows", "list_workflow_steps", "list_workflows"]

StrOrList = str | list[str] | None
TimeArg = str | datetime | None

_QUEUED_STATUSES = ["ENQUEUED", "PENDING", "DELAYED"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _str_list(name: str, value: object) -> list[str] | None:
    """None, or ``value`` (a string or a list of strings) as a list."""
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise DBOSInvalidArgumentError(f"{name} must be a string or a list of strings")
    return list(values)


def _statuses(value: object) -> list[str] | None:
    statuses = _str_list("status", value)
    known = {str(s) for s in WorkflowStatusString}
    for status in statuses or ():
        if status not in known:
            raise DBOSInvalidArgumentError(
                f"Unknown workflow status {status!r} (known: {', '.join(sorted(known))})"
            )
    return statuses


def _epoch_ms(name: str, value: object) -> int | None:
    """An ISO-8601 string or datetime as epoch ms (a naive time is local time)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise DBOSInvalidArgumentError(f"{name} is not an ISO-8601 time: {value!r}") from None
    if not isinstance(value, datetime):
        raise DBOSInvalidArgumentError(f"{name} must be an ISO-8601 string or a datetime")
    aware = value if value.tzinfo is not None else value.astimezone()
    return (aware - _EPOCH) // timedelta(milliseconds=1)


def _flag(name: str, value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise DBOSInvalidArgumentError(f"{name} must be True, False or None, got {value!r}")
    return value


def _count(name: str, value: object, minimum: int) -> int | None:
    return None if value is None else check_int(name, value, minimum=minimum)


# Listing -----------------------------------------------------------------------------------


async def _statuses_of(runtime: Runtime, f: WorkflowFilter) -> list[WorkflowStatus]:
    rows = await list_workflow_rows(runtime.db, f)
    return [
        status_from_row(row, runtime.codec, load_input=f.load_input, load_output=f.load_output)
        for row in rows
    ]


def _listing(name: str, f: WorkflowFilter) -> Coroutine[Any, Any, list[WorkflowStatus]]:
    runtime = runtime_here()
    own = runtime.application_name
    if f.application_names is None and own is not None:  # by default, this application's
        f = dataclasses.replace(f, application_names=[own])  # (and unclaimed) workflows
    return awaited(checkpointed(name, lambda: runtime.forward(_statuses_of(runtime, f))))


def _filter(
    *,
    workflow_ids: list[str] | None,
    status: StrOrList,
    start_time: TimeArg,
    end_time: TimeArg,
    completed_after: TimeArg,
    completed_before: TimeArg,
    dequeued_after: TimeArg,
    dequeued_before: TimeArg,
    name: StrOrList,
    app_version: StrOrList,
    forked_from: StrOrList,
    parent_workflow_id: StrOrList,
    user: StrOrList,
    queue_name: StrOrList,
    limit: int | None,
    offset: int | None,
    sort_desc: bool,
    workflow_id_prefix: StrOrList,
    load_input: bool,
    load_output: bool,
    executor_id: StrOrList,
    queues_only: bool,
    was_forked_from: bool | None,
    is_fork: bool | None,
    has_parent: bool | None,
    attributes: dict[str, Any] | None,
    schedule_name: StrOrList,
    application_name: StrOrList,
) -> WorkflowFilter:
    """Check every filter of a listing and build the query's :class:`WorkflowFilter`."""
    return WorkflowFilter(
        workflow_ids=_str_list("workflow_ids", workflow_ids),
        statuses=_statuses(status),
        created_from_ms=_epoch_ms("start_time", start_time),
        created_until_ms=_epoch_ms("end_time", end_time),
        completed_from_ms=_epoch_ms("completed_after", completed_after),
        completed_until_ms=_epoch_ms("completed_before", completed_before),
        dequeued_from_ms=_epoch_ms("dequeued_after", dequeued_after),
        dequeued_until_ms=_epoch_ms("dequeued_before", dequeued_before),
        names=_str_list("name", name),
        app_versions=_str_list("app_version", app_version),
        users=_str_list("user", user),
        queue_names=_str_list("queue_name", queue_name),
        executor_ids=_str_list("executor_id", executor_id),
        parent_workflow_ids=_str_list("parent_workflow_id", parent_workflow_id),
        forked_from=_str_list("forked_from", forked_from),
        schedule_names=_str_list("schedule_name", schedule_name),
        application_names=_str_list("application_name", application_name),
        id_prefixes=_str_list("workflow_id_prefix", workflow_id_prefix),
        was_forked_from=_flag("was_forked_from", was_forked_from),
        is_fork=_flag("is_fork", is_fork),
        has_parent=_flag("has_parent", has_parent),
        attributes=check_json_object("attributes", attributes),
        queues_only=bool(queues_only),
        limit=_count("limit", limit, 0),
        offset=_count("offset", offset, 0),
        sort_desc=bool(sort_desc),
        load_input=bool(load_input),
        load_output=bool(load_output),
    )


def list_workflows(
    *,
    workflow_ids: list[str] | None = None,
    status: StrOrList = None,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    completed_after: TimeArg = None,
    completed_before: TimeArg = None,
    dequeued_after: TimeArg = None,
    dequeued_before: TimeArg = None,
    name: StrOrList = None,
    app_version: StrOrList = None,
    forked_from: StrOrList = None,
    parent_workflow_id: StrOrList = None,
    user: StrOrList = None,
    queue_name: StrOrList = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    workflow_id_prefix: StrOrList = None,
    load_input: bool = True,
    load_output: bool = True,
    executor_id: StrOrList = None,
    queues_only: bool = False,
    was_forked_from: bool | None = None,
    is_fork: bool | None = None,
    has_parent: bool | None = None,
    attributes: dict[str, Any] | None = None,
    schedule_name: StrOrList = None,
    application_name: StrOrList = None,
) -> Coroutine[Any, Any, list[WorkflowStatus]]:
    """The workflows matching every given filter, ordered by creation time.

    String filters take one value or a list (any of them matches). Time filters take an
    ISO-8601 string or a datetime and bound inclusively: ``start_time``/``end_time`` the
    creation time, ``completed_after``/``completed_before`` the completion time,
    ``dequeued_after``/``dequeued_before`` the time it started from a queue. ``attributes``
    matches workflows whose attributes contain these keys and values. With ``load_input`` /
    ``load_output`` False, inputs / outputs and errors are not read (None).
    """
    f = _filter(
        workflow_ids=workflow_ids,
        status=status,
        start_time=start_time,
        end_time=end_time,
        completed_after=completed_after,
        completed_before=completed_before,
        dequeued_after=dequeued_after,
        dequeued_before=dequeued_before,
        name=name,
        app_version=app_version,
        forked_from=forked_from,
        parent_workflow_id=parent_workflow_id,
        user=user,
        queue_name=queue_name,
        limit=limit,
        offset=offset,
        sort_desc=sort_desc,
        workflow_id_prefix=workflow_id_prefix,
        load_input=load_input,
        load_output=load_output,
        executor_id=executor_id,
        queues_only=queues_only,
        was_forked_from=was_forked_from,
        is_fork=is_fork,
        has_parent=has_parent,
        attributes=attributes,
        schedule_name=schedule_name,
        application_name=application_name,
    )
    return _listing("DBOS.listWorkflows", f)


def list_queued_workflows(
    *,
    workflow_ids: list[str] | None = None,
    status: StrOrList = None,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    completed_after: TimeArg = None,
    completed_before: TimeArg = None,
    dequeued_after: TimeArg = None,
    dequeued_before: TimeArg = None,
    name: StrOrList = None,
    app_version: StrOrList = None,
    forked_from: StrOrList = None,
    parent_workflow_id: StrOrList = None,
    user: StrOrList = None,
    queue_name: StrOrList = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    workflow_id_prefix: StrOrList = None,
    load_input: bool = True,
    load_output: bool = True,
    executor_id: StrOrList = None,
    is_fork: bool | None = None,
    has_parent: bool | None = None,
    attributes: dict[str, Any] | None = None,
    application_name: StrOrList = None,
) -> Coroutine[Any, Any, list[WorkflowStatus]]:
    """The workflows on queues (by default those not finished), with :func:`list_workflows`'s
    filters."""
    f = _filter(
        workflow_ids=workflow_ids,
        status=status if status is not None else list(_QUEUED_STATUSES),
        start_time=start_time,
        end_time=end_time,
        completed_after=completed_after,
        completed_before=completed_before,
        dequeued_after=dequeued_after,
        dequeued_before=dequeued_before,
        name=name,
        app_version=app_version,
        forked_from=forked_from,
        parent_workflow_id=parent_workflow_id,
        user=user,
        queue_name=queue_name,
        limit=limit,
        offset=offset,
        sort_desc=sort_desc,
        workflow_id_prefix=workflow_id_prefix,
        load_input=load_input,
        load_output=load_output,
        executor_id=executor_id,
        queues_only=True,
        was_forked_from=None,
        is_fork=is_fork,
        has_parent=has_parent,
        attributes=attributes,
        schedule_name=None,
        application_name=application_name,
    )
    return _listing("DBOS.listQueuedWorkflows", f)


async def _steps_of(
    runtime: Runtime, workflow_id: str, load_output: bool, limit: int | None, offset: int | None
) -> list[StepInfo]:
    rows = await step_rows(
        runtime.db, workflow_id, load_output=load_output, limit=limit, offset=offset
    )
    codec = runtime.codec
    return [
        StepInfo(
            function_id=row["function_id"],
            function_name=row["function_name"],
            output=_safe_loads(codec, row["output"], row["serialization"]),
            error=_safe_loads(codec, row["error"], row["serialization"], error=True),
            child_workflow_id=row["child_workflow_id"],
            started_at_epoch_ms=row["started_at_epoch_ms"],
            completed_at_epoch_ms=row["completed_at_epoch_ms"],
        )
        for row in rows
    ]


def list_workflow_steps(
    workflow_id: str,
    *,
    load_output: bool = True,
    limit: int | None = None,
    offset: int | None = None,
) -> Coroutine[Any, Any, list[StepInfo]]:
    """A workflow's recorded steps in order (empty for an unknown workflow)."""
    check_id("workflow_id", workflow_id)
    limit, offset = _count("limit", limit, 0), _count("offset", offset, 0)
    runtime = runtime_here()
    return awaited(
        checkpointed(
            "DBOS.listWorkflowSteps",
            lambda: runtime.forward(
                _steps_of(runtime, workflow_id, bool(load_output), limit, offset)
            ),
        )
    )
