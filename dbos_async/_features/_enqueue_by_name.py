"""Enqueueing on a queue named at the call: ``DBOS.enqueue_workflow`` and
``DBOS.enqueue_workflow_with_options``.

``enqueue_workflow(queue_name, func, ...)`` takes the workflow function, or its registered
name. ``enqueue_workflow_with_options(options, ...)`` names everything in an
:class:`EnqueueOptions` and, as in DBOS, does not require the workflow to be registered in this
process: another process sharing the system database may implement it. Unless ``app_version``
is given, the workflow then runs on the latest application version rather than this one.
Both check the queue and every option before anything is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NotRequired, Required, TypedDict

from .._core._context import (
    DBOSContextSetAuth,
    SetWorkflowAttributes,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowIDReusePolicy,
    runtime_here,
)
from .._core._errors import DBOSInvalidArgumentError, DBOSWorkflowFunctionNotFoundError
from .._core._portable import format_name
from .._core._registry import WorkflowInfo
from .._core._runtime import Runtime
from .._core._sync import awaited
from .._core._validation import check_id, check_number
from ._decorators import bound_arguments, workflow_info
from ._enqueue import (
    DuplicationPolicy,
    EnqueueSettings,
    current_enqueue_options,
    enqueue_on,
)
from ._handles import WorkflowHandleAsync
from ._workflow import WorkflowCall, prepare_call

__all__ = [
    "EnqueueOptions",
    "PreparedEnqueue",
    "enqueue_by_options",
    "enqueue_workflow",
    "prepare_by_options",
]


class EnqueueOptions(TypedDict, total=False):
    """Everything about one enqueue by name (``DBOS.enqueue_workflow_with_options``).

    ``workflow_name`` and ``queue_name`` are required; ``workflow_timeout`` is in seconds,
    ``class_name`` and ``instance_name`` name the class (and configured instance) of a method
    workflow; ``application_name`` owns it (by default, the enqueuing application);
    ``serialization_type`` records its inputs (and later its output) in that format (by default,
    the workflow's declared one if it is registered here, else the configured one).
    ``otel_context`` and ``shard_key`` are accepted for DBOS's API.
    """

    workflow_name: Required[str]
    queue_name: Required[str]
    workflow_id: NotRequired[str]
    workflow_id_reuse_policy: NotRequired[WorkflowIDReusePolicy]
    app_version: NotRequired[str]
    workflow_timeout: NotRequired[float]
    delay_seconds: NotRequired[float]
    deduplication_id: NotRequired[str]
    duplication_policy: NotRequired[DuplicationPolicy]
    priority: NotRequired[int]
    queue_partition_key: NotRequired[str]
    authenticated_user: NotRequired[str]
    authenticated_roles: NotRequired[list[str]]
    serialization_type: NotRequired[Any]
    class_name: NotRequired[str]
    instance_name: NotRequired[str]
    attributes: NotRequired[dict[str, Any]]
    application_name: NotRequired[str | None]
    otel_context: NotRequired[Any]
    shard_key: NotRequired[str]


_KNOWN_OPTIONS = frozenset(EnqueueOptions.__annotations__)


def enqueue_workflow(
    queue_name: str, func: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[WorkflowHandleAsync[Any]]:
    """Enqueue ``func`` (a workflow, or the name it is registered under) on ``queue_name``,
    with the options of an enclosing ``SetEnqueueOptions``."""
    check_id("queue_name", queue_name)
    runtime = runtime_here()
    if isinstance(func, str):
        info = runtime.registry.workflows.get(check_id("workflow name", func))
        if info is None:
            raise DBOSWorkflowFunctionNotFoundError(
                "", f"no workflow named {func!r} is registered in this process"
            )
        call = prepare_call(info, args, kwargs)
    else:
        call = prepare_call(workflow_info(func), bound_arguments(func, args), kwargs)
    return awaited(enqueue_on(runtime, call, queue_name, current_enqueue_options()))


@dataclass(frozen=True, slots=True)
class PreparedEnqueue:
    """An enqueue by options, checked and resolved: what to record, on which queue, how."""

    runtime: Runtime
    call: WorkflowCall
    queue_name: str
    settings: EnqueueSettings


def enqueue_by_options(
    options: EnqueueOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[WorkflowHandleAsync[Any]]:
    """Enqueue the workflow ``options`` names, with these arguments; a handle on it."""
    p = prepare_by_options(options, args, kwargs)
    return awaited(enqueue_on(p.runtime, p.call, p.queue_name, p.settings))


def prepare_by_options(
    options: EnqueueOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> PreparedEnqueue:
    """Check ``options`` and resolve the call they describe (its ID, timeout, authentication,
    attributes and format), without writing anything."""
    if not isinstance(options, dict):
        raise DBOSInvalidArgumentError(f"options must be an EnqueueOptions dict, got {options!r}")
    unknown = set(options) - _KNOWN_OPTIONS
    if unknown:
        raise DBOSInvalidArgumentError(f"Unknown enqueue options: {sorted(unknown)}")
    for required in ("workflow_name", "queue_name"):
        if required not in options:
            raise DBOSInvalidArgumentError(f"EnqueueOptions needs {required!r}")
    fmt = format_name(options.get("serialization_type"))
    name = check_id("workflow_name", options["workflow_name"])
    queue_name = check_id("queue_name", options["queue_name"])
    settings = EnqueueSettings.checked(
        deduplication_id=options.get("deduplication_id"),
        priority=options.get("priority"),
        app_version=options.get("app_version"),
        queue_partition_key=options.get("queue_partition_key"),
        delay_seconds=options.get("delay_seconds"),
        duplication_policy=options.get("duplication_policy"),
        pin_version=False,
        application_name=options.get("application_name"),
    )
    runtime = runtime_here()
    class_name, instance_name = options.get("class_name"), options.get("instance_name")
    info = runtime.registry.workflows.get(name) or WorkflowInfo(
        name=name, func=_implemented_elsewhere, is_async=True, class_name=class_name
    )
    with contextlib.ExitStack() as scope:
        for context in _contexts(options):
            scope.enter_context(context)
        call = prepare_call(
            info,
            tuple(args),
            dict(kwargs),
            identity=(class_name or info.class_name, instance_name),
        )
    if fmt is not None:
        call.serialization = fmt
    return PreparedEnqueue(runtime, call, queue_name, settings)


def _contexts(options: EnqueueOptions) -> list[contextlib.AbstractContextManager[Any]]:
    """The context managers that carry ``options`` into the call, as if the caller had set
    them around an ordinary enqueue."""
    contexts: list[contextlib.AbstractContextManager[Any]] = []
    if "workflow_id" in options:
        policy = options.get("workflow_id_reuse_policy", "return-existing")
        contexts.append(SetWorkflowID(options["workflow_id"], workflow_id_reuse_policy=policy))
    if options.get("workflow_timeout") is not None:
        timeout = check_number("workflow_timeout", options["workflow_timeout"], strict=True)
        contexts.append(SetWorkflowTimeout(timeout))
    if options.get("attributes") is not None:
        contexts.append(SetWorkflowAttributes(options["attributes"]))
    if options.get("authenticated_user") is not None:
        user = check_id("authenticated_user", options["authenticated_user"])
        contexts.append(DBOSContextSetAuth(user, options.get("authenticated_roles")))
    return contexts


def _implemented_elsewhere(*_args: Any, **_kwargs: Any) -> Any:
    raise DBOSWorkflowFunctionNotFoundError(
        "", "this workflow is not registered in this process; another process runs it"
    )
