"""Schedules stored in the system database: create, apply, list, pause, resume, trigger,
backfill and delete them, from ``DBOS`` or a ``DBOSClient``.

A schedule names a workflow, a cron expression (in ``cron_timezone``, UTC by default; see
``_cron``), a ``context`` passed to every run and, optionally, a queue. Every process of the
application runs the schedules (``_scheduler``); each tick is enqueued under the workflow ID
``sched-<name>-<tick>``, so it runs once however many processes see it. The workflow is called
with ``(scheduled_time, context)``. A change is announced by a notification and takes effect in
every process at once.

Inside a workflow each call is a checkpointed step (except ``apply_schedules``, refused there,
as in DBOS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, NotRequired, Required, TypedDict

from .._core._context import current_workflow, runtime_here
from .._core._errors import (
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSWorkflowFunctionNotFoundError,
)
from .._core._registry import WorkflowInfo
from .._core._runtime import Runtime
from .._core._validation import check_id
from .._sysdb._declarations import workflow_declared
from .._sysdb._schedules import (
    NewSchedule,
    delete_schedule_row,
    get_schedule_row,
    insert_schedule_rows,
    list_schedule_rows,
    set_schedule_status,
)
from ._cron import Cron
from ._decorators import workflow_info
from ._enqueue import queue_settings
from ._handles import WorkflowHandleAsync
from ._management import managed
from ._schedule_runs import enqueue_tick

__all__ = [
    "ClientScheduleInput",
    "ScheduleInput",
    "WorkflowSchedule",
    "apply_client_schedules",
    "apply_schedules",
    "backfill_schedule",
    "create_client_schedule",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "schedule_from_row",
    "trigger_schedule",
]


class WorkflowSchedule(TypedDict):
    """A stored schedule, as ``list_schedules`` and ``get_schedule`` return it."""

    schedule_id: str
    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str
    status: str
    context: Any
    last_fired_at: str | None
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    application_name: str | None
    shard_key: str | None


class ScheduleInput(TypedDict, total=False):
    """One schedule for ``DBOS.apply_schedules``."""

    schedule_name: Required[str]
    workflow_fn: Required[Callable[..., Any]]
    schedule: Required[str]
    context: NotRequired[Any]
    automatic_backfill: NotRequired[bool]
    cron_timezone: NotRequired[str | None]
    queue_name: NotRequired[str | None]
    shard_key: NotRequired[str | None]


class ClientScheduleInput(TypedDict, total=False):
    """One schedule for ``DBOSClient.apply_schedules``: the workflow is named."""

    schedule_name: Required[str]
    workflow_name: Required[str]
    schedule: Required[str]
    workflow_class_name: NotRequired[str | None]
    context: NotRequired[Any]
    automatic_backfill: NotRequired[bool]
    cron_timezone: NotRequired[str | None]
    queue_name: NotRequired[str | None]
    application_name: NotRequired[str | None]
    shard_key: NotRequired[str | None]


_SCHEDULE_KEYS = frozenset(ScheduleInput.__annotations__)
_CLIENT_SCHEDULE_KEYS = frozenset(ClientScheduleInput.__annotations__)


def schedule_from_row(runtime: Runtime, row: Any) -> WorkflowSchedule:
    """A ``workflow_schedules`` row as a :class:`WorkflowSchedule`."""
    context = row["context"]
    return WorkflowSchedule(
        schedule_id=row["schedule_id"],
        schedule_name=row["schedule_name"],
        workflow_name=row["workflow_name"],
        workflow_class_name=row["workflow_class_name"],
        schedule=row["schedule"],
        status=row["status"],
        context=None
        if context is None
        else runtime.codec.loads(context, row["context_serialization"]),
        last_fired_at=row["last_fired_at"],
        automatic_backfill=row["automatic_backfill"],
        cron_timezone=row["cron_timezone"],
        queue_name=row["queue_name"],
        application_name=row["application_name"],
        shard_key=None,
    )


# Writing ---------------------------------------------------------------------------------


def _function_identity(workflow_fn: Callable[..., Any]) -> tuple[str, str | None]:
    """The name and class name a schedule records for ``workflow_fn``."""
    info: WorkflowInfo = workflow_info(workflow_fn)
    if info.kind == "instance" and info.class_name is not None:
        raise DBOSInvalidArgumentError(
            f"{info.name} is an instance method: a schedule cannot name the instance to call"
        )
    return info.name, info.class_name


async def _definition(
    runtime: Runtime,
    *,
    schedule_name: str,
    workflow_name: str,
    workflow_class_name: str | None,
    schedule: str,
    context: Any,
    automatic_backfill: bool,
    cron_timezone: str | None,
    queue_name: str | None,
    application_name: str | None,
    declared_here: bool,
) -> NewSchedule:
    """Check one schedule (name, cron, time zone, queue, workflow, context) and serialize it."""
    check_id("schedule_name", schedule_name)
    Cron(schedule, cron_timezone)
    if not isinstance(automatic_backfill, bool):
        raise DBOSInvalidArgumentError(
            f"automatic_backfill must be a bool, got {automatic_backfill!r}"
        )
    if queue_name is not None:
        await queue_settings(runtime, check_id("queue_name", queue_name))
    owner = application_name or runtime.application_name
    if not declared_here:
        check_id("workflow_name", workflow_name)
        if await runtime.forward(workflow_declared(runtime.db, owner, workflow_name)) is False:
            raise DBOSWorkflowFunctionNotFoundError(
                workflow_name, f"no process of application {owner!r} declares it"
            )
    return NewSchedule(
        schedule_name=schedule_name,
        workflow_name=workflow_name,
        workflow_class_name=workflow_class_name,
        schedule=schedule,
        context=runtime.codec.dumps(context),
        context_serialization=runtime.codec.name,
        automatic_backfill=automatic_backfill,
        cron_timezone=cron_timezone,
        queue_name=queue_name,
        declared_in_code=False,
        application_name=owner,
    )


async def _write(runtime: Runtime, schedules: list[NewSchedule], *, replace: bool) -> None:
    names = [s.schedule_name for s in schedules]
    if len(set(names)) != len(names):
        raise DBOSInvalidArgumentError(f"Schedule names repeat: {sorted(names)}")
    refused = await runtime.forward(insert_schedule_rows(runtime.db, schedules, replace=replace))
    if refused:
        what = "owned by another application" if replace else "already exists"
        raise DBOSInvalidArgumentError(f"Schedule {refused[0]!r} {what}")


def create_schedule(
    *,
    schedule_name: str,
    workflow_fn: Callable[..., Any],
    schedule: str,
    context: Any = None,
    automatic_backfill: bool = False,
    cron_timezone: str | None = None,
    queue_name: str | None = None,
    shard_key: str | None = None,
) -> Coroutine[Any, Any, None]:
    """Store a schedule: run ``workflow_fn(scheduled_time, context)`` at every tick of the cron
    expression ``schedule`` (in ``cron_timezone``), on ``queue_name`` (else the internal
    queue); with ``automatic_backfill``, ticks missed while no process ran are run when one
    starts. A name that exists is refused. ``shard_key`` is accepted for DBOS's API."""
    workflow_name, class_name = _function_identity(workflow_fn)
    return _create(
        runtime_here(),
        schedule_name=schedule_name,
        workflow_name=workflow_name,
        workflow_class_name=class_name,
        schedule=schedule,
        context=context,
        automatic_backfill=automatic_backfill,
        cron_timezone=cron_timezone,
        queue_name=queue_name,
        application_name=None,
        declared_here=True,
    )


def create_client_schedule(
    *,
    schedule_name: str,
    workflow_name: str,
    schedule: str,
    context: Any = None,
    workflow_class_name: str | None = None,
    automatic_backfill: bool = False,
    cron_timezone: str | None = None,
    queue_name: str | None = None,
    application_name: str | None = None,
    shard_key: str | None = None,
) -> Coroutine[Any, Any, None]:
    """Store a schedule of the workflow named ``workflow_name`` (see :func:`create_schedule`);
    the workflow must be declared by a process of the application."""
    return _create(
        runtime_here(),
        schedule_name=schedule_name,
        workflow_name=workflow_name,
        workflow_class_name=workflow_class_name,
        schedule=schedule,
        context=context,
        automatic_backfill=automatic_backfill,
        cron_timezone=cron_timezone,
        queue_name=queue_name,
        application_name=application_name,
        declared_here=False,
    )


def _create(runtime: Runtime, **fields: Any) -> Coroutine[Any, Any, None]:
    """Check and write one new schedule (``fields`` as :func:`_definition` takes them)."""

    async def work() -> None:
        await _write(runtime, [await _definition(runtime, **fields)], replace=False)

    return managed("DBOS.createSchedule", runtime, work)


def _refuse_in_workflow(operation: str) -> None:
    if current_workflow() is not None:
        raise DBOSException(f"{operation} cannot be called inside a workflow")


def _check_input(entry: Any, keys: frozenset[str], required: Sequence[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise DBOSInvalidArgumentError(f"A schedule must be a dict, got {entry!r}")
    unknown = set(entry) - keys
    if unknown:
        raise DBOSInvalidArgumentError(f"Unknown schedule keys: {sorted(unknown)}")
    for key in required:
        if key not in entry:
            raise DBOSInvalidArgumentError(f"A schedule needs {key!r}")
    return entry


def apply_schedules(schedules: list[ScheduleInput]) -> Awaitable[None]:
    """Create or replace several schedules at once, all or none (status and last tick of a
    replaced one are kept). Not inside a workflow."""
    _refuse_in_workflow("apply_schedules")
    entries = [
        _check_input(e, _SCHEDULE_KEYS, ("schedule_name", "workflow_fn", "schedule"))
        for e in _as_list(schedules)
    ]
    identities = [_function_identity(e["workflow_fn"]) for e in entries]
    runtime = runtime_here()

    async def work() -> None:
        definitions = [
            await _definition(
                runtime,
                schedule_name=e["schedule_name"],
                workflow_name=name,
                workflow_class_name=class_name,
                schedule=e["schedule"],
                context=e.get("context"),
                automatic_backfill=e.get("automatic_backfill", False),
                cron_timezone=e.get("cron_timezone"),
                queue_name=e.get("queue_name"),
                application_name=None,
                declared_here=True,
            )
            for e, (name, class_name) in zip(entries, identities, strict=True)
        ]
        await _write(runtime, definitions, replace=True)

    return runtime.forward(work())


def apply_client_schedules(schedules: list[ClientScheduleInput]) -> Awaitable[None]:
    """:func:`apply_schedules` with workflows named (``DBOSClient.apply_schedules``)."""
    entries = [
        _check_input(e, _CLIENT_SCHEDULE_KEYS, ("schedule_name", "workflow_name", "schedule"))
        for e in _as_list(schedules)
    ]
    runtime = runtime_here()

    async def work() -> None:
        definitions = [
            await _definition(
                runtime,
                schedule_name=e["schedule_name"],
                workflow_name=e["workflow_name"],
                workflow_class_name=e.get("workflow_class_name"),
                schedule=e["schedule"],
                context=e.get("context"),
                automatic_backfill=e.get("automatic_backfill", False),
                cron_timezone=e.get("cron_timezone"),
                queue_name=e.get("queue_name"),
                application_name=e.get("application_name"),
                declared_here=False,
            )
            for e in entries
        ]
        await _write(runtime, definitions, replace=True)

    return runtime.forward(work())


def _as_list(schedules: Any) -> list[Any]:
    if not isinstance(schedules, list | tuple):
        raise DBOSInvalidArgumentError(f"schedules must be a list, got {schedules!r}")
    return list(schedules)


# Reading -----------------------------------------------------------------------------------


def _names(key: str, value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise DBOSInvalidArgumentError(f"{key} must be a string or a list of strings")
    return list(values)


def list_schedules(
    *,
    status: str | list[str] | None = None,
    workflow_name: str | list[str] | None = None,
    schedule_name_prefix: str | list[str] | None = None,
    application_name: str | list[str] | None = None,
) -> Coroutine[Any, Any, list[WorkflowSchedule]]:
    """The stored schedules (those declared with ``@DBOS.scheduled`` too) matching every
    filter given, by name; by default this application's and those nobody owns."""
    filters = {
        "statuses": _names("status", status),
        "workflow_names": _names("workflow_name", workflow_name),
        "name_prefixes": _names("schedule_name_prefix", schedule_name_prefix),
        "applications": _names("application_name", application_name),
    }
    runtime = runtime_here()

    async def work() -> list[WorkflowSchedule]:
        rows = await list_schedule_rows(
            runtime.db, own_application=runtime.application_name, **filters
        )
        return [schedule_from_row(runtime, row) for row in rows]

    return managed("DBOS.listSchedules", runtime, work)


def get_schedule(name: str) -> Coroutine[Any, Any, WorkflowSchedule | None]:
    """The schedule named ``name``, or None."""
    check_id("name", name)
    runtime = runtime_here()

    async def work() -> WorkflowSchedule | None:
        row = await get_schedule_row(runtime.db, name)
        return None if row is None else schedule_from_row(runtime, row)

    return managed("DBOS.getSchedule", runtime, work)


async def _existing(runtime: Runtime, name: str) -> Any:
    row = await get_schedule_row(runtime.db, name)
    if row is None:
        raise DBOSInvalidArgumentError(f"Schedule {name!r} does not exist")
    return row


# Changing --------------------------------------------------------------------------------


def delete_schedule(name: str) -> Coroutine[Any, Any, None]:
    """Delete the schedule ``name`` (nothing happens if there is none); runs it started go on."""
    check_id("name", name)
    runtime = runtime_here()

    async def work() -> None:
        await delete_schedule_row(runtime.db, name)

    return managed("DBOS.deleteSchedule", runtime, work)


def _set_status(operation: str, name: str, status: str) -> Coroutine[Any, Any, None]:
    check_id("name", name)
    runtime = runtime_here()

    async def work() -> None:
        if not await set_schedule_status(runtime.db, name, status):
            raise DBOSInvalidArgumentError(f"Schedule {name!r} does not exist")

    return managed(operation, runtime, work)


def pause_schedule(name: str) -> Coroutine[Any, Any, None]:
    """Stop firing the schedule ``name`` until it is resumed."""
    return _set_status("DBOS.pauseSchedule", name, "PAUSED")


def resume_schedule(name: str) -> Coroutine[Any, Any, None]:
    """Fire the schedule ``name`` again (with ``automatic_backfill``, the ticks missed while it
    was paused are run)."""
    return _set_status("DBOS.resumeSchedule", name, "ACTIVE")


def trigger_schedule(schedule_name: str) -> Coroutine[Any, Any, WorkflowHandleAsync[Any]]:
    """Run the schedule's workflow now, once, as a tick of ``now`` (workflow ID
    ``sched-<name>-trigger-<now>``); a handle on it."""
    check_id("schedule_name", schedule_name)
    runtime = runtime_here()

    async def work() -> str:
        row = await _existing(runtime, schedule_name)
        now = runtime.clock.now_datetime()
        workflow_id = f"sched-{schedule_name}-trigger-{now.isoformat()}"
        return await enqueue_tick(runtime, row, now, workflow_id)

    async def run() -> WorkflowHandleAsync[Any]:
        return WorkflowHandleAsync(runtime, await managed("DBOS.triggerSchedule", runtime, work))

    return run()


def backfill_schedule(
    schedule_name: str, start: datetime, end: datetime
) -> Coroutine[Any, Any, list[WorkflowHandleAsync[Any]]]:
    """Run every tick of the schedule strictly between ``start`` and ``end`` (naive times are
    UTC) that has not run yet; handles on all of them, in order."""
    check_id("schedule_name", schedule_name)
    for key, moment in (("start", start), ("end", end)):
        if not isinstance(moment, datetime):
            raise DBOSInvalidArgumentError(f"{key} must be a datetime, got {moment!r}")
    runtime = runtime_here()

    async def work() -> list[str]:
        row = await _existing(runtime, schedule_name)
        cron = Cron(row["schedule"], row["cron_timezone"])
        return [
            await enqueue_tick(runtime, row, tick, f"sched-{schedule_name}-{tick.isoformat()}")
            for tick in cron.ticks_between(start, end)
        ]

    async def run() -> list[WorkflowHandleAsync[Any]]:
        ids = await managed("DBOS.backfillSchedule", runtime, work)
        return [WorkflowHandleAsync(runtime, workflow_id) for workflow_id in ids]

    return run()
